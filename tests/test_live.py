"""The worker's live window state: statuses by the clock, timers, duplicates, slots, horizon, snapshots."""

from __future__ import annotations

import pickle
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.accumulate import Flushed, SummaryAccumulator
from aggregates.columns import SampleColumns
from aggregates.live import Accepted, LiveKey, LiveSettings
from flows.summarise import accumulator_spec
from mappers.dedup import HorizonFilter, slot_key
from mappers.sample import DeviceInfo, Sample, SampleBatch, SourceInfo, epoch_times
from mappers.tables import metrics

PATIENT = "Patient/p1"
ZONE = "America/New_York"
NY = ZoneInfo(ZONE)
ALL = frozenset({"hour", "day", "night", "cgm"})
HOUR, DAY = 3600.0, 86400.0
TABLE = metrics()
WATCH = SourceInfo("Apple Watch", "10.1", DeviceInfo("Apple Watch", "Apple Inc.", "Watch", None, None))
PHONE = SourceInfo("iPhone", "17.1", DeviceInfo("iPhone", "Apple Inc.", "iPhone", None, None))
APP = SourceInfo("Pedometer", "3.0", None)  # matches no priority fragment: the lowest priority
DEXCOM = SourceInfo("Dexcom G7", "2.1", None)
VENDOR = {"heart_rate": "HKQuantityTypeIdentifierHeartRate", "steps": "HKQuantityTypeIdentifierStepCount",
          "sleep": "HKCategoryTypeIdentifierSleepAnalysis", "cgm_glucose": "HKQuantityTypeIdentifierBloodGlucose"}
GRACE = LiveSettings().grace  # hour 10 min; day, night and CGM 2 h
QUIET = LiveSettings(evict_every=30 * DAY)  # no eviction check due in these tests: next_wake is a window's close


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def day_number(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def sample(metric: str, value: float | None, start: datetime, end: datetime | None = None,
           source: SourceInfo = WATCH, code: str | None = None) -> Sample:
    """A sample as a source builds it: epochs from the datetimes, the zone's local offset of the start."""
    end = start if end is None else end
    return Sample(PATIENT, metric, value, code, TABLE[metric].unit, start, end, source, "healthkit", VENDOR[metric],
                  *epoch_times(start, end), timezone=ZONE)


def batch(metric: str, samples: list[Sample]) -> SampleBatch:
    return SampleBatch(PATIENT, metric, list(samples), ZONE)


def live_key(metric: str, live: LiveSettings | None = None) -> LiveKey:
    """A key as the worker builds it (``flows.live_windows``): keep_all, the settings' grace, the zone's days."""
    live = live or LiveSettings()
    spec = replace(accumulator_spec(TABLE[metric], ALL, 14, ZONE), keep_all=True, grace=dict(live.grace))
    return LiveKey(PATIENT, TABLE[metric], spec, live)


def rows(flushed: Flushed | None) -> dict[tuple[str, int], tuple]:
    """(window, key) → (status, count, total, min, max) of hour and day windows; (status, count) of CGM periods;
    (status, asleep minutes) of nights."""
    out: dict[tuple[str, int], tuple] = {}
    if flushed is None:
        return out
    for window in ("hour", "day"):
        stats, status = getattr(flushed, window), getattr(flushed, f"{window}_status")
        if stats is None:
            continue
        for i, key in enumerate(stats.keys.tolist()):
            out[(window, key)] = (str(status[i]), int(stats.count[i]), float(stats.total[i]),
                                  float(stats.minimum[i]), float(stats.maximum[i]))
    if flushed.cgm is not None:
        assert flushed.cgm_status is not None
        for i, key in enumerate(flushed.cgm.keys.tolist()):
            out[("cgm", key)] = (str(flushed.cgm_status[i]), int(flushed.cgm.count[i]))
    if flushed.night is not None:
        assert flushed.night_status is not None
        asleep = flushed.night.stages.index("asleep")
        for i, key in enumerate(flushed.night.keys.tolist()):
            out[("night", key)] = (str(flushed.night_status[i]), float(flushed.night.minutes[i, asleep]))
    return out


def statuses(flushed: Flushed | None) -> dict[tuple[str, int], str]:
    return {where: row[0] for where, row in rows(flushed).items()}


def hour_key(start_utc: float) -> int:
    """The key of the hour window starting at ``start_utc`` (whole-hour offsets: hours since the epoch)."""
    return int(start_utc // HOUR)


# --- 1. statuses by the clock ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("day", "day_start", "day_end"), [
    (date(2024, 11, 3), utc(2024, 11, 3, 4), utc(2024, 11, 4, 5)),  # fall back: 25 h, EDT midnight to EST
    (date(2024, 3, 10), utc(2024, 3, 10, 5), utc(2024, 3, 11, 4)),  # spring forward: 23 h, EST midnight to EDT
    (date(2024, 7, 15), utc(2024, 7, 15, 4), utc(2024, 7, 16, 4)),
])
def test_hour_and_day_windows_go_preliminary_final_amended_by_the_clock(day: date, day_start: float,
                                                                        day_end: float) -> None:
    key = live_key("heart_rate", QUIET)
    first = sample("heart_rate", 60.0, local(day.year, day.month, day.day, 8, 15))
    hour_start = first.start_epoch - 15 * 60
    hour_close, day_close = hour_start + HOUR + GRACE["hour"], day_end + GRACE["day"]
    hk, dk = ("hour", hour_key(hour_start)), ("day", day_number(day))
    now = first.start_epoch + 60

    assert key.add(batch("heart_rate", [first]), now).kept == [first]
    assert key.next_wake(now) == now + 30  # flush_every after new samples
    assert rows(key.flush(now + 30)) == {hk: ("preliminary", 1, 60.0, 60.0, 60.0),
                                         dk: ("preliminary", 1, 60.0, 60.0, 60.0)}
    assert key.acc is not None and key.acc.next_close() == hour_close
    assert key.next_wake(now + 30) == hour_close  # the timer case: no new sample, the hour must still go final

    assert key.flush(hour_close - 1) is None
    assert statuses(key.flush(hour_close)) == {hk: "final"}  # the day stays open
    assert key.flush(hour_close + 1) is None  # final once
    assert key.acc.next_close() == day_close
    assert day_end - day_start == {3: 25, 10: 23, 15: 24}[day.day] * HOUR

    later = sample("heart_rate", 80.0, local(day.year, day.month, day.day, 8, 40))
    key.add(batch("heart_rate", [later]), hour_close + 60)
    assert rows(key.flush(hour_close + 90)) == {hk: ("amended", 2, 140.0, 60.0, 80.0),
                                                dk: ("preliminary", 2, 140.0, 60.0, 80.0)}
    assert key.next_wake(hour_close + 90) == day_close

    assert key.flush(day_close - 1) is None
    assert rows(key.flush(day_close)) == {dk: ("final", 2, 140.0, 60.0, 80.0)}
    assert key.flush(day_close + 5) is None
    assert key.acc.next_close() is None

    # a sample for the last hour of the day, long after both closed: its hour's first emission is final
    last = sample("heart_rate", 100.0, local(day.year, day.month, day.day, 23, 59))
    key.add(batch("heart_rate", [last]), day_close + 100)
    assert rows(key.flush(day_close + 130)) == {("hour", hour_key(day_end - HOUR)): ("final", 1, 100.0, 100.0, 100.0),
                                                dk: ("amended", 3, 240.0, 60.0, 100.0)}
    assert key.acc.next_close() is None


def test_the_two_hours_around_the_spring_gap_close_one_real_hour_apart() -> None:
    key = live_key("heart_rate", QUIET)
    before, after = sample("heart_rate", 50.0, local(2024, 3, 10, 1, 30)), sample("heart_rate", 70.0,
                                                                                   local(2024, 3, 10, 3, 30))
    assert after.start_epoch - before.start_epoch == HOUR  # 01:30 EST and 03:30 EDT
    key.add(batch("heart_rate", [before, after]), before.start_epoch)
    assert statuses(key.flush(before.start_epoch + 30)) == {
        ("hour", hour_key(utc(2024, 3, 10, 6))): "preliminary", ("hour", hour_key(utc(2024, 3, 10, 7))): "preliminary",
        ("day", day_number(date(2024, 3, 10))): "preliminary"}
    assert key.next_wake(before.start_epoch + 30) == utc(2024, 3, 10, 7) + GRACE["hour"]
    est, edt = ("hour", hour_key(utc(2024, 3, 10, 6))), ("hour", hour_key(utc(2024, 3, 10, 7)))
    assert statuses(key.flush(utc(2024, 3, 10, 7) + GRACE["hour"])) == {est: "final"}
    assert key.next_wake(utc(2024, 3, 10, 7, 11)) == utc(2024, 3, 10, 8) + GRACE["hour"]
    assert statuses(key.flush(utc(2024, 3, 10, 8) + GRACE["hour"])) == {edt: "final"}


def test_a_night_closes_at_the_next_local_noon_plus_grace_across_the_fall_back() -> None:
    key = live_key("sleep", QUIET)
    segment = sample("sleep", None, local(2024, 11, 2, 23, 0), local(2024, 11, 3, 6, 30), code="asleep_core")
    # 23:00 EDT (03:00 UTC) to 06:30 EST (11:30 UTC): 8.5 h
    assert segment.end_epoch - segment.start_epoch == 8.5 * HOUR
    night = ("night", day_number(date(2024, 11, 2)))
    close = utc(2024, 11, 3, 17) + GRACE["night"]  # noon EST of Nov 3
    key.add(batch("sleep", [segment]), segment.end_epoch + 60)
    assert rows(key.flush(segment.end_epoch + 90)) == {night: ("preliminary", 510.0)}
    assert key.next_wake(segment.end_epoch + 90) == close
    assert key.flush(close - 1) is None
    assert rows(key.flush(close)) == {night: ("final", 510.0)}
    assert key.flush(close + 1) is None
    nap = sample("sleep", None, local(2024, 11, 3, 7, 0), local(2024, 11, 3, 7, 30), code="asleep_core")
    key.add(batch("sleep", [nap]), close + 100)
    assert rows(key.flush(close + 130)) == {night: ("amended", 540.0)}


def test_a_cgm_period_closes_at_the_end_of_its_fourteen_local_days_plus_grace() -> None:
    key = live_key("cgm_glucose", QUIET)
    readings = [sample("cgm_glucose", 100.0 + i, local(2024, 3, 12, 9, 5 * i), source=DEXCOM) for i in range(12)]
    # Mar 12, 2024 lies in the 14-day block Mon Mar 4 (EST) .. Sun Mar 17 (EDT): blocks of 14 days from Mon Jan 5, 1970
    assert (date(2024, 3, 4) - date(1970, 1, 5)).days % 14 == 0 and date(2024, 3, 4).weekday() == 0
    period = ("cgm", (date(2024, 3, 4) - date(1970, 1, 5)).days // 14)
    close = utc(2024, 3, 18, 4) + GRACE["cgm"]  # midnight EDT that ends Mar 17
    day_close = utc(2024, 3, 13, 4) + GRACE["day"]
    key.add(batch("cgm_glucose", readings), readings[-1].start_epoch)
    first = key.flush(readings[-1].start_epoch + 30)
    assert statuses(first)[period] == "preliminary" and set(statuses(first).values()) == {"preliminary"}
    assert first is not None and first.cgm is not None and first.cgm.start[0] == utc(2024, 3, 4, 5)
    assert first.cgm.end[0] == utc(2024, 3, 18, 4)
    at_day_close = statuses(key.flush(day_close))
    assert period not in at_day_close and at_day_close[("day", day_number(date(2024, 3, 12)))] == "final"
    assert key.next_wake(day_close) == close
    assert key.flush(close - 1) is None
    assert rows(key.flush(close)) == {period: ("final", 12)}
    assert key.flush(close + 1) is None
    key.add(batch("cgm_glucose", [sample("cgm_glucose", 90.0, local(2024, 3, 16, 9), source=DEXCOM)]), close + 10)
    assert statuses(key.flush(close + 40)) == {period: "amended", ("day", day_number(date(2024, 3, 16))): "final",
                                               ("hour", hour_key(utc(2024, 3, 16, 13))): "final"}


# --- 2. timers ------------------------------------------------------------------------------------------------


def test_idle_keys_arm_no_timer_and_new_samples_arm_one_flush_every_later() -> None:
    live = LiveSettings(horizon=2 * DAY, idle=2 * HOUR, flush_every=45.0, evict_every=HOUR)
    key = live_key("heart_rate", live)
    assert key.next_wake(1e9) is None  # a key that never saw a sample
    old = [sample("heart_rate", 60.0 + i, local(2024, 3, 4, 10 + i)) for i in range(3)]
    now = local(2024, 3, 20, 12).timestamp()
    key.add(batch("heart_rate", old), now)
    assert key.next_wake(now) == now + 45.0
    assert statuses(key.flush(now + 45)) == {**{("hour", hour_key(s.start_epoch)): "final" for s in old},
                                             ("day", day_number(date(2024, 3, 4))): "final"}
    # state is held (samples, duplicate filter): the key checks for eviction once an hour, never flushes
    assert key.next_wake(now + 45) == now + HOUR
    dup = key.add(batch("heart_rate", old), now + 60)  # repeats arm no flush
    assert (dup.kept, dup.duplicates) == ([], 3) and key.next_wake(now + 60) == now + HOUR
    # a check before ``idle`` passed since the old samples came keeps them (an import of history may go on)
    assert key.flush(now + HOUR) is None and key.kept_samples == 3
    assert key.next_wake(now + HOUR) == now + 2 * HOUR
    assert key.flush(now + 2 * HOUR) is None
    assert key.kept_samples == 0 and not key.filter.buckets
    assert key.next_wake(now + 2 * HOUR) is None  # nothing left: no timer


# --- 3. duplicates and re-ordering against import mode --------------------------------------------------------

SOURCES = (WATCH, PHONE, APP)
BASES = (local(2024, 11, 2), local(2024, 3, 9), local(2024, 7, 1))


@st.composite
def live_runs(draw: st.DrawFn, metric: str) -> tuple[list[Sample], list[list[Sample]], list[float], float]:
    """(distinct samples, the batches sent, a flush time after each batch, the clock at the last flush)."""
    base = draw(st.sampled_from(BASES))
    n = draw(st.integers(1, 24))
    made: list[Sample] = []
    for _ in range(n):
        start = base + timedelta(minutes=draw(st.integers(0, 3 * 1440)))
        if metric == "heart_rate":
            made.append(sample(metric, float(draw(st.integers(40, 180))), start))
        else:
            end = start + timedelta(minutes=draw(st.integers(1, 240)))
            made.append(sample(metric, float(draw(st.integers(0, 3000))), start, end, draw(st.sampled_from(SOURCES))))
    distinct = list({(s.source.name, s.start_epoch, s.end_epoch, s.value): s for s in made}.values())
    # what is sent: every distinct sample, some again (the same object or an equal copy), in any order
    sent = list(distinct)
    for s in draw(st.lists(st.sampled_from(distinct), max_size=12)):
        sent.append(s if draw(st.booleans()) else s._replace())
    sent = draw(st.permutations(sent))
    cuts = sorted(draw(st.lists(st.integers(0, len(sent)), max_size=6)))
    batches = [sent[a:b] for a, b in zip([0, *cuts], [*cuts, len(sent)], strict=True)]
    batches += [batches[i] for i in draw(st.lists(st.integers(0, len(batches) - 1), max_size=3))]  # re-sent batches
    first = min(s.start_epoch for s in distinct)
    last = max(s.end_epoch for s in distinct)
    clock = sorted(draw(st.lists(st.floats(first, last + 3 * DAY), min_size=len(batches), max_size=len(batches))))
    return distinct, batches, clock, last + 10 * DAY


def import_mode(metric: str, distinct: list[Sample]) -> dict[tuple[str, int], tuple]:
    m = TABLE[metric]
    acc = SummaryAccumulator(accumulator_spec(m, ALL, 14, ZONE))
    acc.add(SampleColumns.from_samples(distinct, tuple(m.codes), m.source_priority))
    flushed = acc.flush()
    out = rows(flushed)
    assert {row[0] for row in out.values()} == {"final"}
    return out


STATUS_ORDER = re.compile(r"(p)*(fa*)?")  # preliminary..., then final once, then amended...


@pytest.mark.parametrize("metric", ["heart_rate", "steps"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_duplicates_and_reordering_count_once_and_end_at_the_import_result(metric: str, data: st.DataObject) -> None:
    distinct, batches, clock, end = data.draw(live_runs(metric))
    key = live_key(metric, LiveSettings(horizon=400 * DAY))  # no eviction: every window stays
    last: dict[tuple[str, int], tuple] = {}
    history: dict[tuple[str, int], str] = {}
    kept = duplicates = 0
    for part, now in zip(batches, clock, strict=True):
        accepted = key.add(batch(metric, part), now)
        kept += len(accepted.kept)
        duplicates += accepted.duplicates
        assert not accepted.late and accepted.replaced == 0
        for where, row in rows(key.flush(now)).items():
            last[where] = row
            history[where] = history.get(where, "") + row[0][0]
    for where, row in rows(key.flush(end)).items():
        last[where] = row
        history[where] = history.get(where, "") + row[0][0]
    assert kept == len(distinct)
    assert duplicates == sum(len(b) for b in batches) - len(distinct)
    for where, seen in history.items():
        assert STATUS_ORDER.fullmatch(seen), (where, seen)
        assert seen.endswith(("f", "a"))  # the clock ends far after the data: every window is final
    expected = import_mode(metric, distinct)
    assert set(last) == set(expected)
    for where, (_, count, total, low, high) in last.items():
        _, count2, total2, low2, high2 = expected[where]
        assert (count, low, high) == (count2, low2, high2), where
        if metric == "heart_rate":  # whole numbers: any summation order is exact
            assert total == total2, where
        else:  # prorated pieces summed in arrival order: equal up to rounding
            assert total == pytest.approx(total2, rel=1e-9, abs=1e-9), where
        assert count > 0 and total / count == pytest.approx(total2 / count2, rel=1e-9, abs=1e-12)


# --- 4. slot identity -----------------------------------------------------------------------------------------


def test_a_re_sent_slot_replaces_its_value_under_slot_identity_and_adds_under_value_identity() -> None:
    start = local(2024, 5, 6, 10, 0)
    day = ("day", day_number(date(2024, 5, 6)))
    first = sample("steps", 100.0, start, start + timedelta(minutes=1))
    newer = sample("steps", 120.0, start, start + timedelta(minutes=1))
    other = sample("steps", 30.0, start + timedelta(hours=2), start + timedelta(hours=2, minutes=1))
    now = start.timestamp() + 120

    slot = live_key("steps")
    assert slot.add(batch("steps", [first, other]), now, identity="slot").replaced == 0
    assert rows(slot.flush(now + 30))[day][1:3] == (2, 130.0)
    accepted = slot.add(batch("steps", [newer]), now + 60, identity="slot")
    assert (accepted.kept, accepted.replaced, accepted.duplicates) == ([newer], 1, 0)
    assert rows(slot.flush(now + 90))[day][:3] == ("preliminary", 2, 150.0)  # 120 + 30: the 100 is gone
    assert slot.kept_samples == 2
    again = slot.add(batch("steps", [newer._replace()]), now + 120, identity="slot")
    assert (again.kept, again.replaced, again.duplicates) == ([], 0, 1)
    assert slot.flush(now + 150) is None
    back = slot.add(batch("steps", [first._replace()]), now + 180, identity="slot")  # the source went back to 100
    assert (len(back.kept), back.replaced) == (1, 1)
    assert rows(slot.flush(now + 210))[day][1:3] == (2, 130.0)

    value = live_key("steps")
    value.add(batch("steps", [first, other]), now)
    value.flush(now + 30)
    accepted = value.add(batch("steps", [newer]), now + 60)
    assert (accepted.kept, accepted.replaced, accepted.same_slot, accepted.duplicates) == ([newer], 0, 1, 0)
    assert rows(value.flush(now + 90))[day][1:3] == (3, 250.0)  # 100 + 120 + 30: both values of the slot count


def test_a_replaced_heart_rate_slot_leaves_min_and_max_of_the_new_value_only() -> None:
    key = live_key("heart_rate")
    at = local(2024, 5, 6, 10, 0)
    key.add(batch("heart_rate", [sample("heart_rate", 200.0, at), sample("heart_rate", 60.0, at + timedelta(1))]),
            at.timestamp(), identity="slot")
    key.flush(at.timestamp() + 30)
    assert key.add(batch("heart_rate", [sample("heart_rate", 70.0, at)]), at.timestamp() + 60, "slot").replaced == 1
    assert rows(key.flush(at.timestamp() + 90))[("day", day_number(date(2024, 5, 6)))] == (
        "preliminary", 1, 70.0, 70.0, 70.0)


# --- 5. horizon -----------------------------------------------------------------------------------------------


def test_state_past_the_horizon_is_evicted_and_samples_for_it_come_back_late() -> None:
    live = LiveSettings(horizon=2 * DAY, idle=HOUR, evict_every=60.0)
    key = live_key("heart_rate", live)
    d1 = [sample("heart_rate", 60.0, local(2024, 3, 4, 10)), sample("heart_rate", 62.0, local(2024, 3, 4, 22))]
    d2 = [sample("heart_rate", 70.0, local(2024, 3, 5, 10)), sample("heart_rate", 72.0, local(2024, 3, 5, 22, 30))]
    d3 = [sample("heart_rate", 80.0, local(2024, 3, 6, 9))]
    now = local(2024, 3, 6, 9, 5).timestamp()
    key.add(batch("heart_rate", d1 + d2 + d3), now)
    key.flush(now + 30)
    assert key.kept_samples == 5 and key.boundary == float("-inf")
    # the duplicate filter remembers samples per UTC hour of their start (LiveKey: hour buckets)
    assert set(key.filter.buckets) == {int(s.start_epoch // HOUR) for s in d1 + d2 + d3}

    evict_at = local(2024, 3, 7, 1).timestamp()  # 2 days after 01:00 Mar 5: Mar 4 has ended more than 2 days ago
    assert statuses(key.flush(evict_at)) == {("hour", hour_key(utc(2024, 3, 6, 14))): "final"}  # d3's 09:00
    assert key.boundary == utc(2024, 3, 5, 5)  # local midnight that starts Mar 5
    assert key.kept_samples == 3
    assert key.acc is not None and day_number(date(2024, 3, 4)) not in key.acc._folds["day"].keys.tolist()
    assert key.acc._folds["hour"].keys.min() >= hour_key(utc(2024, 3, 5, 5))
    # every hour that ended by the boundary (05:00 UTC Mar 5) is forgotten: d1's, including 22:00 EST (03:00 UTC)
    assert set(key.filter.buckets) == {int(s.start_epoch // HOUR) for s in d2 + d3}

    late = sample("heart_rate", 99.0, local(2024, 3, 4, 12))
    accepted = key.add(batch("heart_rate", [late, d1[1]]), evict_at + 60)
    assert accepted == Accepted([], 0, 0, 0, [late, d1[1]])
    assert key.flush(evict_at + 90) is None  # no window changed
    fresh = sample("heart_rate", 74.0, local(2024, 3, 5, 12))
    assert key.add(batch("heart_rate", [fresh]), evict_at + 120).kept == [fresh]
    assert rows(key.flush(evict_at + 150))[("day", day_number(date(2024, 3, 5)))] == ("amended", 3, 216.0, 70.0, 74.0)


def test_nothing_is_evicted_while_old_samples_keep_arriving() -> None:
    live = LiveSettings(horizon=2 * DAY, idle=HOUR, evict_every=1.0)
    key = live_key("steps", live)
    now = local(2024, 3, 20, 12).timestamp()
    sent = 0
    for i in range(8):  # a history import: a batch of March 4 every half hour for four hours
        start = local(2024, 3, 4, 8) + timedelta(minutes=10 * i)
        accepted = key.add(batch("steps", [sample("steps", 10.0 + i, start, start + timedelta(minutes=5))]), now)
        assert accepted.kept and not accepted.late
        sent += 1
        key.flush(now + 60)
        assert key.kept_samples == sent and key.boundary == float("-inf")
        now += 1800
    last_old = now - 1800
    assert key.flush(last_old + HOUR - 1) is None and key.kept_samples == sent
    assert key.flush(last_old + HOUR) is None
    assert key.kept_samples == 0
    # the boundary is the local midnight (EDT) that starts the day holding last_old + 1 h - 2 days
    assert key.boundary == local(2024, 3, 18).timestamp() == utc(2024, 3, 18, 4)
    start = local(2024, 3, 4, 9, 30)
    assert len(key.add(batch("steps", [sample("steps", 5.0, start, start + timedelta(minutes=5))]), now).late) == 1


def _expected_boundary(metric: str, before: float) -> float:
    """The window start the boundary must be, from zoneinfo and the documented window definitions."""
    moment = datetime.fromtimestamp(before, NY)
    if metric == "sleep":  # nights run from local noon to local noon
        noon = datetime(moment.year, moment.month, moment.day, 12, tzinfo=NY)
        return (noon if noon.timestamp() <= before else noon - timedelta(days=1)).timestamp()
    day = moment.date()
    if metric == "cgm_glucose":  # 14-day periods from Monday 1970-01-05
        day = date(1970, 1, 5) + timedelta(days=(day - date(1970, 1, 5)).days // 14 * 14)
    return datetime(day.year, day.month, day.day, tzinfo=NY).timestamp()


@pytest.mark.parametrize("latest_last", [True, False])
@pytest.mark.parametrize("metric", ["heart_rate", "steps", "cgm_glucose", "sleep"])
@pytest.mark.parametrize("before", [
    local(2024, 3, 8, 23, 30),  # EST, while the latest sample is in EDT (a day read as the next one)
    local(2024, 3, 8, 11, 30),  # ... a night read as the next one
    local(2024, 3, 3, 23, 30),  # ... the last day of a CGM period read as the next period's first
    local(2024, 3, 10, 1, 59),
    local(2024, 11, 3, 1, 30),  # the first 01:30 (EDT) of the fall-back night
    local(2024, 11, 2, 23, 30),
    local(2024, 11, 4, 11, 59),
    local(2024, 6, 1, 12, 0),
])
def test_the_eviction_boundary_is_a_window_start_of_every_kind_the_metric_has(metric: str, before: datetime,
                                                                              latest_last: bool) -> None:
    live = LiveSettings(horizon=10 * DAY, idle=0.0, evict_every=1.0)
    key = live_key(metric, live)
    value, code, source = (None, "asleep_core", WATCH) if metric == "sleep" else (100.0, None, DEXCOM)
    now = before.timestamp() + live.horizon
    latest = datetime.fromtimestamp(now - 600, NY)  # the latest sample's offset is the clock's, not ``before``'s
    old = before - timedelta(days=20)
    samples = [sample(metric, value, old, old + timedelta(minutes=5), source, code),
               sample(metric, value, latest, latest + timedelta(minutes=5), source, code)]
    key.add(batch(metric, samples if latest_last else samples[::-1]), now - 60)
    key.flush(now)
    assert key.boundary == _expected_boundary(metric, before.timestamp()) <= before.timestamp()


def test_a_late_dst_day_sample_is_folded_with_its_whole_day_not_a_cut_one() -> None:
    """``evict`` keyed the day of ``now - horizon`` in the latest sample's offset: 23:30 EST on Mar 8 read as
    00:30 EDT on Mar 9, so the boundary fell at 23:00 Mar 8 and cut the day in two."""
    live = LiveSettings(horizon=3 * DAY, idle=0.0, evict_every=1.0)
    key = live_key("heart_rate", live)
    march8 = [sample("heart_rate", v, local(2024, 3, 8, h, m)) for v, (h, m) in
              zip([60.0, 70.0, 80.0, 90.0], [(21, 0), (22, 0), (23, 10), (23, 50)], strict=True)]
    recent = sample("heart_rate", 100.0, local(2024, 3, 11, 0, 30))  # EDT
    now = local(2024, 3, 8, 23, 30).timestamp() + live.horizon
    key.add(batch("heart_rate", [*march8, recent]), now - 100)
    key.flush(now)
    assert key.boundary == local(2024, 3, 8).timestamp() and key.kept_samples == 5
    accepted = key.add(batch("heart_rate", [sample("heart_rate", 50.0, local(2024, 3, 8, 23, 45))]), now + 10)
    assert len(accepted.kept) == 1 and not accepted.late
    assert rows(key.flush(now + 40))[("day", day_number(date(2024, 3, 8)))] == ("amended", 5, 350.0, 50.0, 90.0)


@pytest.mark.parametrize(("horizon", "grace", "accepted"), [(7200.0, None, 7201.0), (100.0, None, 7201.0),
                                                        (600.0, {"hour": 600.0}, 601.0)])
def test_live_settings_refuse_a_horizon_not_longer_than_the_longest_grace(horizon, grace, accepted) -> None:
    extra = {"grace": grace} if grace else {}
    with pytest.raises(ValueError, match="longer than the longest grace"):
        LiveSettings(horizon=horizon, **extra)
    assert LiveSettings(horizon=accepted, **extra).horizon == accepted


# --- 6. the horizon filter against a model --------------------------------------------------------------------

POOL = [sample("heart_rate", value, local(2024, 1, 1) + timedelta(hours=hours), source=source)
        for hours in (0, 5, 19, 20, 30, 47, 60, 80) for value in (60.0, 61.0) for source in (WATCH, PHONE)]
FILTER_OPS = st.lists(st.one_of(
    st.tuples(st.just("batch"), st.lists(st.integers(0, len(POOL) - 1), max_size=12),
              st.sampled_from(["same", "copy"])),
    st.tuples(st.just("evict"), st.floats(utc(2024, 1, 1) - DAY, utc(2024, 1, 6)), st.just(""))), max_size=14)


@settings(max_examples=200, deadline=None)
@given(ops=FILTER_OPS)
def test_the_horizon_filter_keeps_what_a_per_day_set_model_calls_new(ops) -> None:
    value, slot = HorizonFilter(), HorizonFilter()
    seen: dict[int, set[tuple[int, float]]] = {}  # value identity: day → {(slot, value)}
    held: dict[int, dict[int, float]] = {}  # slot identity: day → {slot: value}
    for op, arg, how in ops:
        if op == "evict":
            value.evict(arg)
            slot.evict(arg)
            for model in (seen, held):
                for day in [d for d in model if (d + 1) * DAY <= arg]:
                    del model[day]
            assert all((d + 1) * DAY > arg for d in [*value.buckets, *slot.slots])
            continue
        samples = [POOL[i] if how == "same" else POOL[i]._replace() for i in arg]
        ids = [(slot_key(s), s.value) for s in samples]
        days = [int(s.start_epoch // DAY) for s in samples]

        before = {d: {k for k, _ in items} for d, items in seen.items()}
        want, same, batch_slots = [], 0, set()
        for i, (ident, day) in enumerate(zip(ids, days, strict=True)):
            if ident in seen.get(day, set()):
                continue
            seen.setdefault(day, set()).add(ident)
            want.append(i)
            same += ident[0] in before.get(day, set()) or ident[0] in batch_slots
            batch_slots.add(ident[0])
        result, replaced = value.filter(samples)
        assert [id(s) for s in result.kept] == [id(samples[i]) for i in want] and replaced == []
        assert (result.duplicates, result.same_slot) == (len(samples) - len(want), same)

        last = {ident[0]: i for i, ident in enumerate(ids)}  # the batch's last value of each slot wins
        kept, swapped = [], []
        for i in sorted(last.values()):
            old = held.get(days[i], {}).get(ids[i][0])
            if old == ids[i][1]:
                continue
            held.setdefault(days[i], {})[ids[i][0]] = ids[i][1]
            kept.append(ids[i])
            if old is not None:
                swapped.append(ids[i])
        result, replaced = slot.filter(samples, "slot")
        assert [(slot_key(s), s.value) for s in result.kept] == kept
        assert sorted((slot_key(s), s.value) for s in replaced) == sorted(swapped)
        assert result.duplicates == len(samples) - len(kept)
    assert set(value.buckets) == set(seen) and value.remembered == sum(len(v) for v in seen.values())
    assert {d for d, s in slot.slots.items() if s} == {d for d, s in held.items() if s}


def test_one_sample_object_sent_twice_in_a_batch_over_two_days_is_kept_once() -> None:
    a, b = sample("heart_rate", 60.0, local(2024, 3, 10, 8)), sample("heart_rate", 61.0, local(2024, 3, 11, 8))
    result, _ = HorizonFilter().filter([a, b, a])
    assert (result.kept, result.duplicates) == ([a, b], 1)


# --- 7. snapshots ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "identity", "noon"), [("heart_rate", "value", 0), ("steps", "slot", 0),
                                                         ("sleep", "value", 12)])
def test_a_snapshot_is_independent_and_resumes_like_the_original(metric: str, identity: str, noon: int) -> None:
    live = LiveSettings(horizon=2 * DAY, idle=0.0, evict_every=60.0)
    value, code = (None, "asleep_core") if metric == "sleep" else (50.0, None)

    def made(day: int, hour: int, scale: float = 1.0) -> Sample:
        start = local(2024, 4, day, hour)
        return sample(metric, None if value is None else value * scale, start, start + timedelta(minutes=30),
                      code=code)

    t0 = local(2024, 4, 3, 12).timestamp()
    key = live_key(metric, live)
    key.add(batch(metric, [made(1, 9), made(2, 9), made(3, 9)]), t0, identity)
    key.flush(t0 + 30)
    snap = key.snapshot()
    frozen = pickle.dumps(snap)
    steps = ((t0 + 60, [made(3, 10), made(3, 9, 2.0)]),  # a new sample; another value of a known slot
             (t0 + 120, [made(3, 10)]),  # a repeat
             (t0 + DAY + HOUR, [made(4, 9)]),  # the flush after it evicts Apr 1
             (t0 + DAY + 2 * HOUR, [made(1, 10), made(2, 13)]))  # late, and in a kept window

    def resume(k: LiveKey) -> list[tuple]:
        out = []
        for now, part in steps:
            accepted = k.add(batch(metric, part), now, identity)
            out.append(((len(accepted.kept), accepted.duplicates, accepted.same_slot, accepted.replaced,
                         len(accepted.late)), rows(k.flush(now + 30)), k.kept_samples, k.boundary,
                        k.next_wake(now + 30)))
        return out

    original = resume(key)
    assert pickle.dumps(snap) == frozen  # the original moved on: the snapshot did not
    assert resume(pickle.loads(frozen)) == original
    assert resume(snap) == original
    counts = [step[0] for step in original]
    assert counts[0] == {"heart_rate": (2, 0, 1, 0, 0), "steps": (2, 0, 0, 1, 0), "sleep": (1, 1, 0, 0, 0)}[metric]
    assert counts[1] == (0, 1, 0, 0, 0) and counts[3] == (1, 0, 0, 0, 1)
    assert original[2][3] == local(2024, 4, 2, noon).timestamp()  # the window start after Apr 1's


def test_a_key_without_windows_forgets_old_identities_and_never_calls_samples_late() -> None:
    """Raw-only keys (no summary windows): the duplicate filter still ages out past the horizon (bounded memory),
    and an old sample re-sent after that is accepted again (its raw Observation is re-written under the same id)."""
    live = LiveSettings(horizon=2 * 86400.0, idle=0.0, evict_every=60.0)
    key = LiveKey("Patient/p1", metrics()["heart_rate"], replace(
        accumulator_spec(metrics()["heart_rate"], frozenset(), 14, "America/New_York"), keep_all=True), live)
    assert key.acc is None
    old = [sample("heart_rate", 60.0 + i, local(2024, 3, 1, 8, i)) for i in range(5)]
    now = utc(2024, 3, 1, 9)
    assert len(key.add(batch("heart_rate", old), now).kept) == 5
    assert key.next_wake(now) == now + 60.0  # holding identities: an eviction check is due
    assert key.add(batch("heart_rate", old), now).duplicates == 5
    later = utc(2024, 3, 10)
    key.flush(later)
    assert not key.filter.buckets and key.next_wake(later) is None
    again = key.add(batch("heart_rate", old), later)
    assert len(again.kept) == 5 and not again.late
