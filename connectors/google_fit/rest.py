"""Google Fit REST reads (fitness v1) through the real google-api-python-client: designated streams, windows, errors.

* :func:`build_fitness` builds the real client from the discovery document shipped in the wheel (no discovery
  fetch); ``endpoint`` replaces root URL and service path (``http://127.0.0.1:PORT/fitness/v1/users/`` in tests).
  The credentials' transport (``google_auth_httplib2.AuthorizedHttp``) refreshes the access token once on a 401.
* :class:`FitRestReader` lists the patient's data sources, reads exactly one designated stream per feed
  (:func:`~connectors.google_fit.points.choose_streams`, never the union) and turns ``datasets.get`` pages into
  :class:`~mappers.sample.SampleBatch` items with the shared point parser. Nanosecond times stay integers.
* Errors: 429, 5xx, 403 ``rateLimitExceeded``/``userRateLimitExceeded``, transport failures and retryable token
  endpoint failures are retried with exponential backoff and full jitter, honouring ``Retry-After``, bounded
  (then :class:`~wearfhir.errors.ServiceError`); any other 403 on a stream marks its data type "not granted"
  (:attr:`FitRestReader.not_granted`) and the other types go on; ``invalid_grant`` on refresh raises
  :class:`ReconsentNeeded`.

Delivery: at-least-once per window; a re-read yields identical samples (and so identical Observation ids).
The service object is not thread-safe (httplib2): one per patient and thread. Logs carry stream ids, statuses and
counts, never tokens, bodies or values.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httplib2
from google.auth.credentials import Credentials
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from connectors.fhir.client import RetryPolicy
from connectors.google_fit.points import (
    Feed,
    FitPointParser,
    GoogleFitTable,
    StreamChoice,
    choose_streams,
    google_fit_table,
    stream_data_type,
)
from mappers.sample import Rejection, Sample, SampleBatch
from wearfhir.errors import ConfigError, ServiceError, WearfhirError

__all__ = ["FitRestReader", "ReconsentNeeded", "WindowSync", "build_fitness"]

log = logging.getLogger("wearfhir.google_fit")

RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_EXHAUSTED",
                          "RATE_LIMIT_EXCEEDED"})
MAX_PAGES = 10_000  # a runaway nextPageToken loop stops here


class ReconsentNeeded(WearfhirError):
    """The patient's Google grant is gone (``invalid_grant``: revoked, expired, unused for 6 months)."""

    def __init__(self, patient: str) -> None:
        self.patient = patient
        super().__init__(
            f"Google Fit access for patient {patient!r} was revoked or has expired (invalid_grant). Stop polling "
            f"this patient and re-link it: `wearfhir google-fit link --patient {patient}`; other patients go on.")


class _Refused(Exception):
    """A non-retryable HTTP answer for one request (status, and whether it means the scope is not granted)."""

    def __init__(self, status: int, not_granted: bool) -> None:
        super().__init__(status)
        self.status = status
        self.not_granted = not_granted


def build_fitness(credentials: Credentials, endpoint: str | None = None) -> Any:
    """The real ``fitness v1`` client, from the discovery document shipped with the library (never fetched).

    ``endpoint`` (ending in ``/``, e.g. ``http://127.0.0.1:PORT/fitness/v1/users/``) replaces the root URL and
    service path; None keeps Google's ``https://fitness.googleapis.com/fitness/v1/users/``.
    """
    if endpoint is not None and not endpoint.endswith("/"):
        raise ConfigError(f"Google Fit endpoint {endpoint!r} must end with '/' (e.g. …/fitness/v1/users/)")
    options = {"api_endpoint": endpoint} if endpoint is not None else None
    return discovery.build("fitness", "v1", credentials=credentials, static_discovery=True,
                           cache_discovery=False, client_options=options)


def _reasons(content: bytes | None) -> set[str]:
    """The machine reasons of a Google JSON error body: ``errors[].reason``, ``details[].reason``, ``status``."""
    try:
        error = json.loads(content or b"{}").get("error")
    except (ValueError, AttributeError):
        return set()
    if not isinstance(error, dict):
        return set()
    found = {str(error["status"])} if error.get("status") else set()
    for key in ("errors", "details"):
        for item in error.get(key) or []:
            if isinstance(item, dict) and item.get("reason"):
                found.add(str(item["reason"]))
    return found


def _retry_after(resp: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or unreadable."""
    value = resp.get("retry-after") if hasattr(resp, "get") else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _invalid_grant(exc: RefreshError) -> bool:
    if exc.args and isinstance(exc.args[-1], dict) and exc.args[-1].get("error") == "invalid_grant":
        return True
    return bool(exc.args) and str(exc.args[0]).startswith("invalid_grant")


def _check_ns(*values: int) -> None:
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("window bounds must be integer nanoseconds (a float loses precision above 2^53)")


@dataclass
class WindowSync:
    """What one window sync produced: the items, points received per data type and what was refused."""

    items: list[SampleBatch | Rejection] = field(default_factory=list)
    points: Counter[str] = field(default_factory=Counter)  # data type -> points received
    samples: Counter[str] = field(default_factory=Counter)  # metric -> samples produced
    rejections: int = 0
    not_granted: set[str] = field(default_factory=set)
    failed: dict[str, int] = field(default_factory=dict)  # stream -> HTTP status


class FitRestReader:
    """Reads one patient's Fit data over REST: the designated stream per feed, window by window.

    ``service`` is a :func:`build_fitness` client for that patient's credentials. ``sleep`` and ``seed`` are
    seams for tests (the backoff's clock and jitter).
    """

    def __init__(self, service: Any, table: GoogleFitTable | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, *, page_size: int = 1000,
                 seed: int | None = None) -> None:
        self.service = service
        self.table = table or google_fit_table()
        self.retry = retry or RetryPolicy(max_attempts=6, base_seconds=1.0, cap_seconds=60.0)
        self.page_size = page_size
        self._sleep = sleep
        self._rng = random.Random(seed)  # noqa: S311 - backoff jitter, not cryptography
        self.not_granted: set[str] = set()  # data types whose scope the patient did not grant
        self.failed: dict[str, int] = {}  # stream -> HTTP status of another refusal (404, 400)
        self.points: Counter[str] = Counter()  # data type -> points received
        self.requests = 0
        self.retries = 0

    # ---- one request, with the retry policy ---------------------------------------------------------------------
    def _execute(self, make: Callable[[], Any], what: str, patient: str) -> dict[str, Any]:
        for attempt in range(self.retry.max_attempts):
            retry_after: float | None = None
            self.requests += 1
            try:
                body = make().execute(num_retries=0)  # retries are ours: honour Retry-After, inject the sleep
                return body if isinstance(body, dict) else {}
            except RefreshError as exc:
                if _invalid_grant(exc):
                    raise ReconsentNeeded(patient) from None
                if not exc.retryable:
                    raise ServiceError(f"Google's token endpoint refused to refresh the access token for patient "
                                       f"{patient!r} ({type(exc).__name__}); check the OAuth client "
                                       "configuration") from None
                failure = "token endpoint unavailable"
            except HttpError as exc:
                status = exc.status_code
                reasons = _reasons(exc.content)
                if not (status == 429 or status >= 500 or (status == 403 and reasons & RATE_REASONS)):
                    raise _Refused(status, status == 403) from None
                failure = f"HTTP {status}"
                retry_after = _retry_after(exc.resp)
            except (OSError, httplib2.HttpLib2Error, TransportError) as exc:
                failure = type(exc).__name__
            if attempt + 1 >= self.retry.max_attempts:
                raise ServiceError(f"Google Fit {what} failed after {attempt + 1} attempts ({failure}); "
                                   "try again later") from None
            delay = self.retry.delay(attempt, retry_after, self._rng)
            self.retries += 1
            log.warning("google fit %s: %s, retry %d in %.1f s", what, failure, attempt + 1, delay)
            self._sleep(delay)
        raise ServiceError(f"Google Fit {what}: no attempts allowed by the retry policy")

    # ---- streams ------------------------------------------------------------------------------------------------
    def list_streams(self, patient: str = "") -> list[str]:
        """Every stream id of ``dataSources.list`` (only the sources visible to this OAuth client and scopes)."""
        sources = self.service.users().dataSources()
        try:
            body = self._execute(lambda: sources.list(userId="me"), "dataSources.list", patient)
        except _Refused as refused:
            raise ServiceError(f"Google Fit refused to list data sources (HTTP {refused.status}) for patient "
                               f"{patient!r}: check the granted scopes") from None
        return [str(s["dataStreamId"]) for s in body.get("dataSource") or []
                if isinstance(s, dict) and s.get("dataStreamId")]

    def designated_streams(self, patient: str = "") -> dict[str, StreamChoice]:
        """The stream chosen per feed from the patient's ``dataSources.list`` (feed name → choice)."""
        streams = self.list_streams(patient)
        chosen = choose_streams(streams, self.table)
        log.info("google fit: %d data sources listed, %d feeds have a stream", len(streams), len(chosen))
        for choice in chosen.values():
            log.info("google fit: feed %s reads stream %s (%s)", choice.feed, choice.stream, choice.rule)
        return chosen

    def _pages(self, stream: str, dataset_id: str, patient: str) -> Iterator[dict[str, Any]]:
        datasets = self.service.users().dataSources().datasets()
        token: str | None = None
        seen: set[str] = set()
        for page in range(MAX_PAGES):
            kwargs: dict[str, Any] = {"userId": "me", "dataSourceId": stream, "datasetId": dataset_id,
                                      "limit": self.page_size}
            if token is not None:
                kwargs["pageToken"] = token
            body = self._execute(functools.partial(datasets.get, **kwargs), f"datasets.get {stream} page {page + 1}",
                                 patient)
            yield body
            token = body.get("nextPageToken") or None
            if token is None:
                return
            if token in seen:
                log.warning("google fit: stream %s repeated a page token after %d pages; stopping", stream, page + 1)
                return
            seen.add(token)
        log.warning("google fit: stream %s: more than %d pages in one window; stopping", stream, MAX_PAGES)

    # ---- windows ------------------------------------------------------------------------------------------------
    def read_window(self, patient: str, timezone: str | None, start_ns: int, end_ns: int,
                    choices: Iterable[StreamChoice] | None = None) -> Iterator[SampleBatch | Rejection]:
        """The samples of ``[start_ns, end_ns]`` from each chosen stream (default: :meth:`designated_streams`).

        One ``SampleBatch`` per metric and page, in page order (Fit serves the newest points first). A 403 on a
        stream that is not a rate limit marks its data type not granted and skips the type's other streams.
        """
        _check_ns(start_ns, end_ns)
        if end_ns < start_ns:
            raise ValueError("the window ends before it starts")
        picked = list(self.designated_streams(patient).values() if choices is None else choices)
        feeds_by_stream: dict[str, list[Feed]] = {}
        for choice in picked:
            feeds_by_stream.setdefault(choice.stream, []).append(self.table.feeds[choice.feed])
        parser = FitPointParser(patient, self.table, zone=timezone)
        dataset_id = f"{start_ns}-{end_ns}"
        for stream, feeds in feeds_by_stream.items():
            data_type = stream_data_type(stream)
            if data_type in self.not_granted:
                continue
            received = 0
            try:
                for body in self._pages(stream, dataset_id, patient):
                    body.setdefault("dataSourceId", stream)
                    received += len(body.get("point") or [])
                    yield from self._parse(body, feeds, parser, patient, timezone)
            except _Refused as refused:
                if refused.not_granted:
                    self.not_granted.add(data_type)
                    log.warning("google fit: %s not granted (HTTP 403 on stream %s); other types go on",
                                data_type, stream)
                else:
                    self.failed[stream] = refused.status
                    log.warning("google fit: stream %s refused with HTTP %d; other streams go on", stream,
                                refused.status)
            self.points[data_type] += received
            log.info("google fit: stream %s: %d points in window", stream, received)

    def _parse(self, body: dict[str, Any], feeds: list[Feed], parser: FitPointParser, patient: str,
               timezone: str | None) -> Iterator[SampleBatch | Rejection]:
        by_metric: dict[str, list[Sample]] = {}
        rejections: list[Rejection] = []
        for feed in feeds:
            for item in parser.parse_dataset(body, feed):
                if isinstance(item, Sample):
                    by_metric.setdefault(item.metric, []).append(item)
                else:
                    rejections.append(item)
        for metric, samples in by_metric.items():
            yield SampleBatch(patient, metric, samples, timezone)
        yield from rejections

    def sync_window(self, patient: str, timezone: str | None, start_ns: int, end_ns: int) -> WindowSync:
        """Designated streams, then :meth:`read_window` over each; counts points per data type and samples."""
        before = Counter(self.points)
        out = WindowSync()
        for item in self.read_window(patient, timezone, start_ns, end_ns):
            out.items.append(item)
            if isinstance(item, SampleBatch):
                out.samples[item.metric] += len(item.samples)
            else:
                out.rejections += 1
        out.points = self.points - before
        out.not_granted = set(self.not_granted)
        out.failed = dict(self.failed)
        log.info("google fit: window synced: %d samples over %d metrics, %d rejections, %d types not granted",
                 sum(out.samples.values()), len(out.samples), out.rejections, len(out.not_granted))
        return out
