"""Window statistics → summary Observations (DESIGN §3), incl. the HL7 CGM IG summary panel. Pure.

* hour / day windows: ``valueQuantity`` is the mean (sampled metrics) or the total (cumulative metrics,
  after source de-duplication, long samples prorated over the windows they cross); ``component``s carry
  minimum, maximum and count for sampled metrics and the count for cumulative ones (a per-sample minimum
  of step counts means nothing to a clinician), each coded with ``observation-statistics`` alone (see
  ``_stat_code``: R4 obs-7); metrics with bands add time in range. Minimum and maximum are sample values
  as measured (never rounded); means and totals are rounded to the metric's ``decimals`` for display.
  Daily totals use the 24-hour LOINC code where there is one (steps 41950-7 ``/d``). A cumulative
  window's count is the number of samples contributing to it (a sample across two hours counts in both).
* sleep: one Observation per night, total sleep (93832-4) as the value, minutes per stage as components;
  a night with in-bed time but no sleep is "Time in bed" (the in-bed stage code) with the in-bed minutes.
* CGM: the ``cgm-summary`` panel (107931-8) and its six members, per the HL7 CGM IG 1.0.0: the reporting
  period as dates (last day inclusive), the whole block, members in the IG's order, the IG's quantity patterns,
  and an "insufficient data" note below 70 % sensor active (see ``_cgm``). Hour and day summaries of CGM
  glucose are coded as the mean glucose over a period (97507-8), never as a reading (99504-3).

Every summary carries a generated narrative (:mod:`mappers.narrative`) built from the same statistics as its
structured values, so a window re-emitted ``amended`` carries the narrative of its new values.

Every summary has identifier system ``…/summary`` and a value naming patient, metric, window and
statistic set, so a re-run or late data re-uses the id (status ``amended`` when late data changed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from aggregates.accumulate import Flushed, window_bounds
from aggregates.cgm import CgmStats
from aggregates.cgm_profile import CgmProfile
from aggregates.sleep import SleepNights
from aggregates.stats import WindowStats
from mappers.cgm_report import CgmReportInput, cgm_report_resource, render_cgm_report_pdf
from mappers.context import UCUM_SYSTEM, FhirContext
from mappers.ids import resource_id
from mappers.narrative import day_text, hour_text, narrative, night_text, number, period_text, repeated_hour
from mappers.observation import category_for
from mappers.tables import Metric

__all__ = ["CGM_BANDS", "CGM_MEMBERS", "CGM_SUFFICIENT_ACTIVE", "STATISTICS_SYSTEM", "SUMMARY_PART_WINDOWS",
           "SummaryBatch", "SummaryBuilder"]

Resource = dict[str, Any]

STATISTICS_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-statistics"
LOINC = "http://loinc.org"
CGM_PROFILE = "http://hl7.org/fhir/uv/cgm/StructureDefinition/"

# (LOINC code, text) of the CGM time-in-range bands, lowest first (edges 54, 70, 181, 251 mg/dL).
CGM_BANDS = (
    ("104642-4", "Time in very low range (<54 mg/dL)"),
    ("104641-6", "Time in low range (54-69 mg/dL)"),
    ("97510-2", "Time in target range (70-180 mg/dL)"),
    ("104640-8", "Time in high range (181-250 mg/dL)"),
    ("104639-0", "Time in very high range (>250 mg/dL)"),
)
# member → (LOINC code, display, profile); the panel is 107931-8.
CGM_PANEL = ("107931-8", "Continuous glucose monitoring summary panel - Reporting Period", "cgm-summary")
CGM_MEMBERS = {
    "mean": ("97507-8", "Average glucose [Mass/volume] in Interstitial fluid during Reporting Period",
             "cgm-summary-mean-glucose-mass-per-volume"),
    "times-in-ranges": ("106793-3", "Continuous glucose monitoring time in ranges panel",
                        "cgm-summary-times-in-ranges"),
    "gmi": ("97506-0", "Glucose management indicator", "cgm-summary-gmi"),
    "cv": ("104638-2", "Glucose standard deviation/Glucose mean in Reporting Period Interstitial fluid by "
           "calculation", "cgm-summary-coefficient-of-variation"),
    "days-of-wear": ("104636-6", "Days continuous glucose monitor device worn [#] Reporting Period Estimated",
                     "cgm-summary-days-of-wear"),
    "sensor-active": ("104637-4", "Percentage of time continuous glucose monitor device worn Reporting Period "
                      "Calculated", "cgm-summary-sensor-active-percentage"),
}
# the IG's quantity patterns (profiles.fsh: GlucoseMassPerVolume 'mg/dL' "mg/dl", QuantityPercent '%' "%",
# days of wear 'd' "days"): a pattern fixes the unit text too
MEAN_GLUCOSE_UNIT = {"unit": "mg/dl", "system": UCUM_SYSTEM, "code": "mg/dL"}
# consensus (Battelino et al., Diabetes Care 2019): CGM metrics are reliable with >= 70 % of 14 days of data
CGM_SUFFICIENT_ACTIVE = 70.0
_BAND_SHORT = ("very low", "low", "target", "high", "very high")
_STAT_DISPLAY = {"average": "Average", "minimum": "Minimum", "maximum": "Maximum", "count": "Count",
                 "sum": "Sum"}
_WINDOW_TEXT = {"hour": "hourly", "day": "daily"}
_LABORATORY = category_for("laboratory")
SUMMARY_PART_WINDOWS = 1_000  # windows per SummaryBatch: at most ~7,000 Observations (CGM) built at once
_BAND_CODES = [{"coding": [{"system": LOINC, "code": loinc}], "text": text} for loinc, text in CGM_BANDS]


def _rounded(values: np.ndarray, decimals: int) -> list[Any]:
    """Values rounded for display (integers when ``decimals`` is 0)."""
    if decimals <= 0:
        return [int(round(v)) for v in values.tolist()]
    return [round(v, decimals) for v in values.tolist()]


def _as_measured(values: np.ndarray) -> list[float | int]:
    """Sample values exactly as measured (a whole number written without a trailing ``.0``)."""
    return [int(v) if v.is_integer() else v for v in values.tolist()]


def _offset_text(offset: int) -> str:
    """``-05:00`` for -18000 seconds (as ``datetime.isoformat`` writes it)."""
    sign = "-" if offset < 0 else "+"
    hours, rest = divmod(abs(int(offset)), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


def _local_texts(epoch: np.ndarray, offset: np.ndarray) -> list[str]:
    """ISO local date-times (``2024-11-03T01:00:00-05:00``) of many instants at once."""
    local = np.datetime_as_string((epoch + offset).astype("datetime64[s]"), unit="s").tolist()
    suffix = {o: _offset_text(o) for o in set(offset.tolist())}
    return [f"{text}{suffix[o]}" for text, o in zip(local, offset.tolist(), strict=True)]


def _periods(start: np.ndarray, start_offset: np.ndarray, end: np.ndarray, end_offset: np.ndarray
             ) -> list[dict[str, str]]:
    """``effectivePeriod`` of each window, in the local offsets given."""
    return [{"start": a, "end": b}
            for a, b in zip(_local_texts(start, start_offset), _local_texts(end, end_offset), strict=True)]


def _dates(days: np.ndarray) -> list[str]:
    """ISO dates of day numbers (days since 1970-01-01)."""
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"), unit="D").tolist()


def _percent(value: float) -> dict[str, Any]:
    return {"value": round(float(value), 2), "unit": "%", "system": UCUM_SYSTEM, "code": "%"}


def _bands_text(shares: list[float], unit: str = "%") -> str:
    """``"Time in ranges: very low 12.5 %, low 12.5 %, target 50 %, high 12.5 %, very high 12.5 %"``."""
    return "Time in ranges: " + ", ".join(f"{name} {number(share, 2)} {unit}"
                                          for name, share in zip(_BAND_SHORT, shares, strict=True))


def _samples_text(count: int, what: str = "samples") -> str:
    return f"{number(count)} {what[:-1] if count == 1 else what}"


def _priority_text(metric: Metric) -> str:
    """How overlapping sources were de-duplicated (cumulative metrics)."""
    return f"Where sources overlap: {' preferred over '.join(metric.source_priority)}, then other apps"


class SummaryBuilder:
    """Builds summary Observations for one deployment."""

    def __init__(self, ctx: FhirContext) -> None:
        self._ctx = ctx
        self._system = ctx.system("summary")

    # -- shared parts -------------------------------------------------------------------------------------
    def _head(self, identity: str, status: str, subject: dict[str, str], category: list[dict[str, Any]] | None,
              code: dict[str, Any], profile: str | None = None) -> Resource:
        """The parts every summary Observation starts with (``category`` as built by ``category_for``)."""
        obs: Resource = {"resourceType": "Observation", "id": resource_id("summary", self._system, identity)}
        if profile:
            obs["meta"] = {"profile": [CGM_PROFILE + profile]}
        obs["identifier"] = [{"system": self._system, "value": identity}]
        obs["status"] = status
        if category:
            obs["category"] = category
        obs["code"] = code
        obs["subject"] = subject
        return obs

    @staticmethod
    def _stat_code(statistic: str, text: str) -> dict[str, Any]:
        """A statistics component's code: the ``observation-statistics`` coding alone, and a text naming the metric.

        Not the metric's LOINC coding as well: R4 obs-7 forbids a component whose code shares a coding with the
        Observation's code while the Observation has a value (here the mean or total), and a viewer that shows a
        component by its first coding would print "Heart rate: 61, Heart rate: 92" for the minimum and maximum.
        The metric is already the Observation's code; the text ("Heart rate, minimum") names both for people.
        """
        return {"coding": [{"system": STATISTICS_SYSTEM, "code": statistic, "display": _STAT_DISPLAY[statistic]}],
                "text": text}

    @staticmethod
    def _summary_code(metric: Metric, window: str) -> tuple[list[dict[str, str]], str, str]:
        """(codings as FHIR JSON, UCUM unit, unit text) of an hour or day summary's code and value."""
        if "cgm" in metric.summaries:
            # the mean of CGM readings over a window is not a reading: 99504-3 codes one sensor reading (the IG's
            # cgm-sensor-reading profile); 97507-8 is the average interstitial glucose over a stated period (the
            # IG's mean-glucose member), the period being effectivePeriod (metrics.toml [cgm_glucose])
            loinc, display, _ = CGM_MEMBERS["mean"]
            return [{"system": LOINC, "code": loinc, "display": display}], metric.unit, metric.unit_display
        codings, unit, unit_display = metric.summary_codings(window)
        return [c.as_fhir() for c in codings], unit, unit_display

    # -- entry point --------------------------------------------------------------------------------------
    def build(self, patient: str, metric: Metric, flushed: Flushed) -> list[Resource]:
        """Every summary resource of one flush of one (patient, metric): Observations, and the CGM report
        (a DiagnosticReport right after the panel it reports) where the flush carries CGM profiles."""
        out: list[Resource] = []
        for window in ("hour", "day"):
            stats: WindowStats | None = getattr(flushed, window)
            status = getattr(flushed, f"{window}_status")
            if stats is not None and len(stats):
                out.extend(self._windows(patient, metric, window, stats, status, flushed.zone))
        if flushed.night is not None and flushed.night_status is not None:
            out.extend(self._nights(patient, metric, flushed.night, flushed.night_status))
        if flushed.cgm is not None and flushed.cgm_status is not None:
            out.extend(self._cgm(patient, metric, flushed.cgm, flushed.cgm_status, flushed.cgm_profiles,
                                 flushed.cgm_last))
        return out

    # -- hour and day -------------------------------------------------------------------------------------
    def _windows(self, patient: str, metric: Metric, window: str, stats: WindowStats,
                 status: np.ndarray, zone: str | None) -> list[Resource]:
        """Hour or day summaries; the per-window texts and numbers are prepared as whole arrays first.
        ``zone`` (the patient's IANA zone, or None) places the day windows' local midnights."""
        cumulative = metric.aggregation == "cumulative"
        codings, unit, unit_display = self._summary_code(metric, window)
        what = "total" if cumulative else "mean"
        display = "CGM glucose" if "cgm" in metric.summaries else metric.display
        code_text = f"{display}, {_WINDOW_TEXT[window]} {what}"
        code: dict[str, Any] = {"text": code_text}
        if codings:
            code = {"coding": codings, **code}
        category = category_for(metric.category)
        subject = {"reference": patient}
        bounds = window_bounds(window, stats, zone)
        periods = _periods(*bounds)
        if window == "hour":
            start = bounds[0]
            labels = [f"{t}Z" for t in np.datetime_as_string(start.astype("datetime64[s]"), unit="s").tolist()]
        else:
            labels = _dates(stats.keys)
        decimals = metric.decimals
        values = _rounded(stats.total if cumulative else stats.mean, decimals)
        minimum, maximum = _as_measured(stats.minimum), _as_measured(stats.maximum)  # sample values: unrounded
        counts = stats.count.tolist()
        statuses = status.tolist()
        shares = (np.round(100.0 * stats.bands / stats.count[:, None], 2).tolist()
                  if stats.bands is not None and len(metric.bands) == 4 else None)
        statset = "total-count" if cumulative else "mean-min-max-count"  # no "," or "|": search-friendly
        comp_min = self._stat_code("minimum", f"{display}, minimum")
        comp_max = self._stat_code("maximum", f"{display}, maximum")
        comp_count = self._stat_code("count", f"{display}, number of samples")
        priority = _priority_text(metric) if cumulative else None
        head = f"{patient}|{metric.key}|{window}|"
        q = {"unit": metric.unit_display, "system": UCUM_SYSTEM, "code": metric.unit}
        out = []
        for i, label in enumerate(labels):
            obs = self._head(f"{head}{label}|{statset}", statuses[i], subject, category, code)
            obs["effectivePeriod"] = periods[i]
            obs["valueQuantity"] = {"value": values[i], "unit": unit_display, "system": UCUM_SYSTEM, "code": unit}
            components: list[dict[str, Any]] = []
            if not cumulative:
                components.append({"code": comp_min, "valueQuantity": {"value": minimum[i], **q}})
                components.append({"code": comp_max, "valueQuantity": {"value": maximum[i], **q}})
            components.append({"code": comp_count, "valueInteger": counts[i]})
            if shares is not None:
                components.extend({"code": band_code, "valueQuantity": _percent(share)}
                                  for band_code, share in zip(_BAND_CODES, shares[i], strict=True))
            obs["component"] = components
            period = periods[i]
            when = (hour_text(period["start"], period["end"], repeated_hour(period["start"], zone))
                    if window == "hour" else day_text(period["start"]))
            details = [] if cumulative else [
                f"Minimum {number(minimum[i], decimals)}, maximum {number(maximum[i], decimals)} {unit_display}"]
            details.append(f"From {_samples_text(counts[i])}")
            if shares is not None:
                details.append(_bands_text(shares[i]))
            if priority is not None:
                details.append(priority)
            obs["text"] = narrative(f"{code_text}: {number(values[i], decimals)} {unit_display}", when, details)
            out.append(obs)
        return out

    # -- sleep --------------------------------------------------------------------------------------------
    def _nights(self, patient: str, metric: Metric, nights: SleepNights, status: np.ndarray) -> list[Resource]:
        stage_system = self._ctx.code_system(metric.key.replace("_", "-"))
        codings = [c.as_fhir() for c in metric.codings]
        category = category_for(metric.category)
        subject = {"reference": patient}
        periods = _periods(nights.start, nights.start_offset, nights.end, nights.end_offset)
        in_bed = nights.stages.index("in_bed") if "in_bed" in nights.stages[:-1] else -1
        out = []
        for i, night in enumerate(_dates(nights.keys)):
            identity = "|".join((patient, metric.key, "night", night, "stage-minutes"))
            code: dict[str, Any] = {"text": f"{metric.display}, night of {night}"}
            if codings:
                code = {"coding": codings, **code}
            # a night with in-bed time and no sleep stage has no sleep duration to report: a "Sleep duration"
            # without a value would read as a night not slept (or not measured). Its measure is the time in
            # bed, so the Observation is coded as that (the in-bed stage code) and carries the in-bed minutes;
            # the in-bed component is then left out (obs-7: a component must not repeat the Observation's code)
            value_stage: int | None = None  # the ``minutes`` column that is the value: -1 = total sleep
            if nights.recorded[i, -1]:
                value_stage = -1
            elif in_bed >= 0 and nights.recorded[i, in_bed]:
                value_stage = in_bed
                code = {"coding": [{"system": stage_system, "code": "in_bed",
                                    "display": metric.codes.get("in_bed", "In bed")}], "text": "Time in bed"}
            obs = self._head(identity, str(status[i]), subject, category, code)
            obs["effectivePeriod"] = periods[i]
            if value_stage is not None:
                obs["valueQuantity"] = {"value": round(float(nights.minutes[i, value_stage]), 1), "unit": "min",
                                        "system": UCUM_SYSTEM, "code": "min"}
            components = []
            for j, stage in enumerate(nights.stages[:-1]):
                if not nights.recorded[i, j] or j == value_stage:
                    continue
                display = metric.codes.get(stage, stage)
                components.append({
                    "code": {"coding": [{"system": stage_system, "code": stage, "display": display}],
                             "text": f"{display}, minutes"},
                    "valueQuantity": {"value": round(float(nights.minutes[i, j]), 1), "unit": "min",
                                      "system": UCUM_SYSTEM, "code": "min"},
                })
            if components:
                obs["component"] = components
            if "valueQuantity" not in obs and not components:
                continue  # nothing counted that night (only out-of-bed markers)
            obs["text"] = self._night_narrative(metric, nights, i, night, value_stage, periods[i])
            out.append(obs)
        return out

    @staticmethod
    def _night_narrative(metric: Metric, nights: SleepNights, i: int, night: str, value_stage: int | None,
                         period: dict[str, str]) -> dict[str, Any]:
        """"Sleep, night of Tue 12 Mar 2024: 435 min asleep (7 h 15 min)", the span, and minutes per stage."""
        def minutes(value: float) -> str:
            hours, rest = divmod(int(round(value)), 60)
            if not hours:
                return f"{number(value, 1)} min"
            return f"{number(value, 1)} min ({hours} h {rest} min)" if rest else f"{number(value, 1)} min ({hours} h)"

        if value_stage == -1:
            headline = f"{metric.display}, {night_text(night)}: {minutes(nights.minutes[i, -1])} asleep"
        elif value_stage is not None:
            headline = f"Time in bed, {night_text(night)}: {minutes(nights.minutes[i, value_stage])}"
        else:
            headline = f"{metric.display}, {night_text(night)}: no sleep recorded"
        window = f"{night_text(night)}: {period['start'][11:16]} to {day_text(period['end'])} {period['end'][11:16]}"
        details = [f"{metric.codes.get(stage, stage)}: {minutes(nights.minutes[i, j])}"
                   for j, stage in enumerate(nights.stages[:-1]) if nights.recorded[i, j]]
        return narrative(headline, window, details)

    # -- CGM ----------------------------------------------------------------------------------------------
    def _cgm(self, patient: str, metric: Metric, cgm: CgmStats, status: np.ndarray,
             profiles: list[CgmProfile] | None = None, last_readings: np.ndarray | None = None) -> list[Resource]:
        """The ``cgm-summary`` panel of each reporting period and its six members (HL7 CGM IG 1.0.0).

        * ``effectivePeriod``: the period's first and last days as dates (the IG's "YYYY-MM-DD"; the last day is
          inclusive, as in the IG's example ``2024-05-01``–``2024-05-31``), the whole block however many days
          have readings; sensor-active % is measured against it (aggregates.cgm).
        * members in the IG's order (mean, times in ranges, GMI, CV, days of wear, sensor active), values in
          the IG's quantity patterns (mean glucose ``mg/dL`` with unit text ``mg/dl``).
        * below 70 % sensor active the consensus (Battelino et al., Diabetes Care 2019) holds the metrics
          unreliable, and the IG has no element for it: the panel and the sensor-active member say so in a
          ``note`` (shown by every viewer) and in their narratives, and the sensor-active member carries the
          consensus goal as ``referenceRange`` (low 70 %) with ``interpretation`` L (below it), which viewers
          flag and code can read.
        """
        subject = {"reference": patient}
        firsts, lasts = _dates(cgm.first_day), _dates(cgm.last_day)
        days = cgm.days
        out = []
        for i, (first, last) in enumerate(zip(firsts, lasts, strict=True)):
            period = {"start": first, "end": last}
            when = f"{period_text(first, last)} ({days} days)"
            base = "|".join((patient, metric.key, "cgm", f"{first}/{days}d"))
            mean, gmi, cv = round(float(cgm.mean[i]), 1), round(float(cgm.gmi[i]), 2), round(float(cgm.cv[i]), 2)
            active, worn = round(float(cgm.active_percent[i]), 2), int(cgm.days_worn[i])
            shares = [round(float(x), 2) for x in cgm.band_percent[i]]
            readings = f"From {_samples_text(int(cgm.count[i]), 'readings')}"
            sufficient = active >= CGM_SUFFICIENT_ACTIVE
            sufficiency = (
                f"Sufficient data: sensor active {number(active, 2)} % of the reporting period (consensus goal: "
                f"at least {number(CGM_SUFFICIENT_ACTIVE)} %)" if sufficient else
                f"Insufficient data: sensor active {number(active, 2)} % of the reporting period, below the "
                f"{number(CGM_SUFFICIENT_ACTIVE)} % the international consensus on time in range requires for "
                "these metrics to be reliable")
            values: dict[str, dict[str, Any]] = {
                "mean": {"valueQuantity": {"value": mean, **MEAN_GLUCOSE_UNIT}},
                "times-in-ranges": {"component": [
                    {"code": band_code, "valueQuantity": _percent(share)}
                    for band_code, share in zip(_BAND_CODES, shares, strict=True)
                ]},
                "gmi": {"valueQuantity": _percent(gmi)},
                "cv": {"valueQuantity": _percent(cv)},
                "days-of-wear": {"valueQuantity": {"value": worn, "unit": "days", "system": UCUM_SYSTEM,
                                                   "code": "d"}},
                "sensor-active": {"valueQuantity": _percent(active), "referenceRange": [{
                    "low": _percent(CGM_SUFFICIENT_ACTIVE),
                    "text": f"Consensus goal: sensor active at least {number(CGM_SUFFICIENT_ACTIVE)} % of the "
                            "reporting period"}]},
            }
            headlines = {
                "mean": f"Mean glucose: {number(mean, 1)} mg/dL",
                "times-in-ranges": _bands_text(shares),
                "gmi": f"Glucose management indicator (GMI): {number(gmi, 2)} %",
                "cv": f"Glucose coefficient of variation (CV): {number(cv, 2)} %",
                "days-of-wear": f"Days with CGM readings: {worn} of {days}",
                "sensor-active": f"CGM sensor active: {number(active, 2)} % of the reporting period",
            }
            note = None if sufficient else [{"text": sufficiency}]
            if note:
                values["sensor-active"]["interpretation"] = [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L",
                    "display": "Low"}], "text": "Insufficient data (below the consensus goal)"}]
                values["sensor-active"]["note"] = note
            members: list[Resource] = []
            for name in ("mean", "times-in-ranges", "gmi", "cv", "days-of-wear", "sensor-active"):
                member = self._cgm_obs(f"{base}|{name}", str(status[i]), subject, CGM_MEMBERS[name], period,
                                       values[name])
                member["text"] = narrative(headlines[name], f"Reporting period {when}", [readings, sufficiency])
                members.append(member)
            panel_body: dict[str, Any] = {"hasMember": [{"reference": f"Observation/{m['id']}"} for m in members]}
            if note:
                panel_body["note"] = note
            panel = self._cgm_obs(f"{base}|cgm-summary", str(status[i]), subject, CGM_PANEL, period, panel_body)
            panel["text"] = narrative(
                "CGM summary" + ("" if sufficient else ": insufficient data"), f"Reporting period {when}",
                [headlines[name] for name in ("mean", "times-in-ranges", "gmi", "cv", "days-of-wear",
                                              "sensor-active")] + [readings, sufficiency])
            out.extend(members)
            out.append(panel)
            if profiles is not None and last_readings is not None:  # the period's one-page report
                out.append(self._cgm_report(patient, base, panel["id"], cgm, i, date.fromisoformat(first),
                                            date.fromisoformat(last), profiles[i], float(last_readings[i]),
                                            str(status[i])))
        return out

    def _cgm_report(self, patient: str, base: str, panel_id: str, cgm: CgmStats, i: int, first_day: date,
                    last_day: date, profile: CgmProfile, issued: float, status: str) -> Resource:
        """The DiagnosticReport holding the PDF of period ``i``; issued at its last reading (deterministic, and
        later when late data amends the period)."""
        pdf = render_cgm_report_pdf(CgmReportInput(
            first_day=first_day, last_day=last_day, days_worn=int(cgm.days_worn[i]),
            active_percent=float(cgm.active_percent[i]), mean=float(cgm.mean[i]), gmi=float(cgm.gmi[i]),
            cv=float(cgm.cv[i]), band_percent=cgm.band_percent[i].tolist(), profile=profile))
        return cgm_report_resource(system=self._system, period_identity=base, patient=patient, panel_id=panel_id,
                                   first_day=first_day, last_day=last_day, issued=issued, pdf=pdf, status=status)

    def _cgm_obs(self, identity: str, status: str, subject: dict[str, str], kind: tuple[str, str, str],
                 period: dict[str, str], body: dict[str, Any]) -> Resource:
        loinc, display, profile = kind
        obs = self._head(identity, status, subject, _LABORATORY,
                         {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display}, profile)
        obs["effectivePeriod"] = period
        obs.update(body)
        return obs


@dataclass(frozen=True, slots=True)
class SummaryBatch:
    """Part of one flush of one (patient, metric): compact window statistics that become summary
    Observations when a sink asks for them (:meth:`resources`).

    Building late keeps memory flat: a 1M-record import has ~85k summaries, ~4 KB each as dicts, and
    built up front they would all wait in the dataflow at once; as statistics they take a few bytes per
    window, and a sink builds, writes and drops one part (``SUMMARY_PART_WINDOWS`` windows) at a time.
    """

    patient: str
    metric: Metric
    flushed: Flushed
    builder: SummaryBuilder

    @property
    def windows(self) -> dict[str, int]:
        """How many windows of each kind this part covers."""
        return self.flushed.counts()

    def resources(self) -> list[Resource]:
        """The summary Observations of this part (built on every call: do not call twice for one write)."""
        return self.builder.build(self.patient, self.metric, self.flushed)
