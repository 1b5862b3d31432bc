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

__all__ = ["ImportSettings", "PATIENT_REFERENCE", "SUMMARY_WINDOWS", "WorkerSettings", "parse_duration",
           "parse_summaries"]

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


DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str | float) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``3d`` → seconds."""
    if isinstance(text, int | float):
        return float(text)
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 2h or 3d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class WorkerSettings(BaseModel):
    """Settings of the stream worker (``wearfhir worker`` passes them to every process as JSON in
    ``WEARFHIR_WORKER_SETTINGS``; they hold names of secret variables and files, never secrets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str
    fhir: dict[str, object]  # the FhirTarget fields (url, auth options, bundle size …)
    raw: Literal["all", "spot", "none"] = "spot"
    summaries: frozenset[str] = frozenset(SUMMARY_WINDOWS)
    cgm_days: int = Field(default=14, ge=1, le=90)
    identifier_base: str = DEFAULT_IDENTIFIER_BASE
    shards: int | None = Field(default=None, ge=1, le=4096)  # None: the count set in Redis (default 16)
    horizon: float = Field(default=3 * 86400, gt=0)  # seconds a window's state is kept after its end
    idle: float = Field(default=3600, ge=0)
    grace: dict[str, float] = Field(default_factory=lambda: {"hour": 600.0, "day": 7200.0, "night": 7200.0,
                                                             "cgm": 7200.0})
    flush_every: float = Field(default=30.0, gt=0)
    evict_every: float = Field(default=3600.0, gt=0)
    sink_partitions: int = Field(default=2, ge=1, le=64)
    read_count: int = Field(default=64, ge=1, le=10_000)
    idle_backoff: float = Field(default=0.2, gt=0, le=10)
    backup_seconds: float = Field(default=3600.0, ge=0)  # keep input this long behind the committed position
    retain_seconds: float | None = Field(default=7 * 86400, ge=0)  # None: never trim the input streams
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no metrics server; process k serves on port + k
    metrics_host: str = "127.0.0.1"

    @field_validator("summaries", mode="before")
    @classmethod
    def _summaries(cls, value: object) -> object:
        return parse_summaries(value) if isinstance(value, str) else value

    @field_validator("grace", mode="before")
    @classmethod
    def _grace(cls, value: object) -> object:
        if isinstance(value, str):  # "hour=10m,day=2h"
            pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
            if any(len(p) != 2 or p[0].strip() not in SUMMARY_WINDOWS for p in pairs):
                raise ValueError(f"grace must look like hour=10m,day=2h (windows: {', '.join(SUMMARY_WINDOWS)})")
            defaults = {"hour": 600.0, "day": 7200.0, "night": 7200.0, "cgm": 7200.0}
            return {**defaults, **{k.strip(): parse_duration(v) for k, v in pairs}}
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WorkerSettings:
        """Read ``WEARFHIR_WORKER_SETTINGS`` (JSON, what ``wearfhir worker`` writes), or ``WEARFHIR_REDIS`` and
        ``WEARFHIR_FHIR`` (URLs) for a plain ``python -m bytewax.run flows.worker``."""
        import json

        text = env.get("WEARFHIR_WORKER_SETTINGS")
        if text:
            return cls.model_validate(json.loads(text))
        missing = [k for k in ("WEARFHIR_REDIS", "WEARFHIR_FHIR") if not env.get(k)]
        if missing:
            raise ConfigError(f"set {', '.join(missing)} (or WEARFHIR_WORKER_SETTINGS) to run the worker flow")
        values: dict[str, object] = {"redis_url": env["WEARFHIR_REDIS"], "fhir": {"url": env["WEARFHIR_FHIR"]}}
        for name in ("raw", "summaries", "identifier_base", "metrics_port"):
            if env.get(f"WEARFHIR_{name.upper()}"):
                values[name] = env[f"WEARFHIR_{name.upper()}"]
        if env.get("WEARFHIR_HORIZON"):
            values["horizon"] = parse_duration(env["WEARFHIR_HORIZON"])
        return cls.model_validate(values)
