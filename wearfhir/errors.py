"""The error hierarchy shared by every package.

::

    WearfhirError               anything wearfhir raises on purpose
    ├── ConfigError             settings or a mapping table are wrong: fix the configuration and rerun
    ├── DataError               the input is bad: counted, reported, never retried
    │   ├── UnsupportedInputError   not something wearfhir can read (no HealthData XML, unknown format)
    │   ├── UnsafeInputError        refused for safety (zip path traversal, compression bomb, size limit)
    │   └── TruncatedInputError     the input ends early; everything before the stop point was kept
    └── ServiceError            an outside service failed after bounded retries: try again later

Every message says what happened and what the user can do about it, and carries no sample values.
"""

from __future__ import annotations


class WearfhirError(Exception):
    """Base class of every error wearfhir raises on purpose."""


class ConfigError(WearfhirError):
    """The configuration or a mapping table is invalid."""


class DataError(WearfhirError):
    """The input data is invalid; retrying the same input will fail the same way."""


class UnsupportedInputError(DataError):
    """The input is not a format wearfhir reads."""


class UnsafeInputError(DataError):
    """The input was refused because reading it would be unsafe."""


class TruncatedInputError(DataError):
    """The input ended before its end marker; what was read before that point was kept."""


class ServiceError(WearfhirError):
    """An outside service (FHIR server, Redis, Google) failed after bounded retries."""
