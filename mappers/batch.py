"""A sample batch → the FHIR resources written for it (raw Observations and their Devices). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mappers.context import FhirContext
from mappers.observation import ObservationBuilder
from mappers.resources import reading_device, to_fhir_device
from mappers.sample import DeviceInfo, SampleBatch
from mappers.tables import Metric

__all__ = ["BatchMapper", "MappedBatch", "RawPolicy", "VENDOR_SYSTEMS", "map_batch", "writes_raw"]

RawPolicy = Literal["all", "spot", "none"]

# Code system of each origin's own type identifiers (DESIGN §3).
VENDOR_SYSTEMS = {
    "healthkit": "http://developer.apple.com/documentation/healthkit",
    "google_fit": "https://developers.google.com/fit/datatypes",
    # Health Auto Export's metric names: the app author's JSON format page, which defines them (since 2021)
    "health_auto_export": "https://github.com/Lybron/health-auto-export/wiki/API-Export---JSON-Format",
}


@dataclass(slots=True)
class MappedBatch:
    """The resources built from one batch, with the counts the run report needs."""

    metric: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    duplicates: int = 0
    same_slot: int = 0  # distinct samples kept that share type, source and times with another (other value)
    raw_skipped: int = 0


def writes_raw(metric: Metric, policy: RawPolicy) -> bool:
    """Whether raw Observations of this metric are written under the ``--raw`` policy."""
    return policy == "all" or (policy == "spot" and metric.raw_default == "spot")


class BatchMapper:
    """Maps sample batches to resources for one deployment; holds the builder caches."""

    def __init__(self, metrics: dict[str, Metric], ctx: FhirContext, policy: RawPolicy) -> None:
        self.metrics = metrics
        self.ctx = ctx
        self.policy = policy
        self.observations = ObservationBuilder(metrics, ctx, cgm_source_devices=True)

    def __call__(self, batch: SampleBatch, duplicates: int = 0, same_slot: int = 0,
                 slot_identity: bool = False) -> MappedBatch:
        """Map one batch; ``duplicates`` is how many samples were dropped from it upstream, ``same_slot`` how many
        of its samples share a slot with another one (kept: their values differ); ``slot_identity`` names raw
        Observations by slot alone (a re-sent slot's newer value replaces the resource)."""
        return map_batch(batch, self, duplicates, same_slot, slot_identity)


def map_batch(batch: SampleBatch, mapper: BatchMapper, duplicates: int = 0, same_slot: int = 0,
              slot_identity: bool = False) -> MappedBatch:
    """Build the raw Observations of a batch (per the raw policy) and the Devices they reference.

    Devices come first in ``resources`` so that a server sink can resolve the references.
    """
    metrics, ctx, policy = mapper.metrics, mapper.ctx, mapper.policy
    metric = metrics[batch.metric]
    out = MappedBatch(batch.metric, samples=len(batch.samples) + duplicates, duplicates=duplicates,
                      same_slot=same_slot)
    if not writes_raw(metric, policy):
        out.raw_skipped = len(batch.samples)
        return out
    cgm = "cgm" in metric.summaries  # CGM readings reference a Device shaped as the HL7 CGM IG's cgm-device
    devices: dict[DeviceInfo, None] = {}
    observations = []
    build = mapper.observations.build
    for sample in batch.samples:
        observations.append(build(sample, metric, VENDOR_SYSTEMS[sample.origin], slot_identity))
        device = reading_device(sample.source, cgm)
        if device is not None:
            devices[device] = None
    out.resources = [to_fhir_device(batch.patient, d, ctx, cgm=cgm) for d in devices] + observations
    return out
