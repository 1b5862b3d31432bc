"""Typed settings, read once (from the CLI or the environment) and handed to flows and connectors."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aggregates.accumulate import WINDOWS
from mappers.ids import DEFAULT_IDENTIFIER_BASE
from mappers.zones import resolve_zone
from wearfhir.errors import ConfigError

__all__ = ["ImportSettings", "PATIENT_REFERENCE", "SUMMARY_WINDOWS", "parse_summaries"]

PATIENT_REFERENCE = re.compile(r"Patient/[A-Za-z0-9\-.]{1,64}")
SUMMARY_WINDOWS = WINDOWS  # hour, day, night, cgm: defined once, with the window state


def parse_summaries(text: str) -> frozenset[str]:
    """``hour,day`` → the set of summary windows; ``none`` → no summaries; ``all`` → every window."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if words == ["none"]:
        return frozenset()
    if words == ["all"]:
        return frozenset(SUMMARY_WINDOWS)
    unknown = [w for w in words if w not in SUMMARY_WINDOWS]
    if unknown or not words:
        raise ValueError(f"summaries must be 'none', 'all' or a comma list of {', '.join(SUMMARY_WINDOWS)}"
                         f" (got {text!r})")
    return frozenset(words)


class ImportSettings(BaseModel):
    """Settings of the ``import`` flow: one export, one patient, one output directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Path
    patient: str
    out: Path | None = None
    raw: Literal["all", "spot", "none"] = "spot"
    identifier_base: str = DEFAULT_IDENTIFIER_BASE
    chunk_bytes: int = Field(default=1 << 20, ge=4096, le=64 << 20)
    summaries: frozenset[str] = frozenset(SUMMARY_WINDOWS)
    cgm_days: int = Field(default=14, ge=1, le=90)
    rejected: Path | None = None  # where rejected input records are listed when there is no ``out``
    timezone: str | None = None  # the patient's IANA zone; None: the zone the export names, else its offsets

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and resolve_zone(value) is None:
            raise ValueError(f"{value!r} is not an IANA time zone name (e.g. Europe/Berlin, America/New_York)")
        return value

    @field_validator("summaries", mode="before")
    @classmethod
    def _summaries(cls, value: object) -> object:
        return parse_summaries(value) if isinstance(value, str) else value

    @field_validator("patient")
    @classmethod
    def _patient_reference(cls, value: str) -> str:
        if not PATIENT_REFERENCE.fullmatch(value):
            raise ValueError("must be a FHIR reference such as Patient/123 (id: letters, digits, '-', '.')")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ImportSettings:
        """Read ``WEARFHIR_SOURCE``/``_PATIENT``/``_OUT``; optional ``_RAW``, ``_SUMMARIES``, ``_IDENTIFIER_BASE``,
        ``_TIMEZONE``."""
        missing = [k for k in ("WEARFHIR_SOURCE", "WEARFHIR_PATIENT", "WEARFHIR_OUT") if not env.get(k)]
        if missing:
            raise ConfigError(f"set {', '.join(missing)} to run the import flow")
        values: dict[str, object] = {
            "source": env["WEARFHIR_SOURCE"],
            "patient": env["WEARFHIR_PATIENT"],
            "out": env["WEARFHIR_OUT"],
        }
        if env.get("WEARFHIR_RAW"):
            values["raw"] = env["WEARFHIR_RAW"]
        if env.get("WEARFHIR_SUMMARIES"):
            values["summaries"] = env["WEARFHIR_SUMMARIES"]
        if env.get("WEARFHIR_IDENTIFIER_BASE"):
            values["identifier_base"] = env["WEARFHIR_IDENTIFIER_BASE"]
        if env.get("WEARFHIR_TIMEZONE"):
            values["timezone"] = env["WEARFHIR_TIMEZONE"]
        return cls.model_validate(values)
