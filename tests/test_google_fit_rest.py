"""Google Fit REST reads: the real google-api-python-client against a local fake of Google's endpoints.

The client is built from the discovery document shipped in the wheel and pointed at ``tests/fit_server.py``; an
audit hook fails the test on any name lookup or connection that is not 127.0.0.1. Real bodies from
../shared/samples/google-fit/rest/ are served where they match (the 88-stream listing, heart rate, weight, height,
merged steps, the empty dataset); other bodies are built in the documented shape. Expected values were read from
the files by hand: heart rate 54 and 58.0; weights 72.0999984741211, 72, 75.75070190429688 (float32 shortest 72.1,
72, 75.7507 by ``str(numpy.float32(x))``); steps 4146, 0, 17, 184 with the 2nd and 4th from ``user_input``.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from google.oauth2.credentials import Credentials

from connectors.fhir.client import RetryPolicy
from connectors.google_fit.points import StreamChoice
from connectors.google_fit.rest import FitRestReader, ReconsentNeeded, build_fitness
from mappers.ids import DEFAULT_IDENTIFIER_BASE, identifier_system, resource_id, sample_identifier_value
from mappers.sample import Rejection, Sample, SampleBatch
from tests.fit_server import SAMPLES, FitFake, data_source, fit_server, point
from wearfhir.errors import ServiceError

LISTING = SAMPLES / "dataSources" / "list_multi_device_fitbit_strava_fittofit.json"
GMS = "com.google.android.gms"
STEPS = f"derived:com.google.step_count.delta:{GMS}:estimated_steps"
MERGE_STEPS = f"derived:com.google.step_count.delta:{GMS}:merge_step_deltas"
HEART = f"derived:com.google.heart_rate.bpm:{GMS}:merge_heart_rate_bpm"
RESTING = f"derived:com.google.heart_rate.bpm:{GMS}:resting_heart_rate<-merge_heart_rate_bpm"
SLEEP = f"derived:com.google.sleep.segment:{GMS}:merged"
WEIGHT = f"derived:com.google.weight:{GMS}:merge_weight"
HEIGHT = f"derived:com.google.height:{GMS}:merge_height"
ACCESS, REFRESH, SECRET = "ya29.test-access", "1//test-refresh", "test-client-secret"
PATIENT, ZONE = "patient-7", "Europe/Berlin"
WINDOW = (1420099200000000000, 1436566038006058105)  # the real bodies' minStartTimeNs .. steps maxEndTimeNs
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z

# ---- zero non-loopback traffic -------------------------------------------------------------------------------------
_GUARD: dict[str, Any] = {"on": False, "bad": []}


class NonLoopback(RuntimeError):
    pass


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _GUARD["on"]:
        return
    host: Any = None
    if event == "socket.connect":
        address = args[1]
        if not isinstance(address, tuple):  # AF_UNIX path
            return
        host = address[0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0]
    else:
        return
    if isinstance(host, bytes):
        host = host.decode()
    if host not in ("127.0.0.1", None):
        _GUARD["bad"].append((event, host))
        raise NonLoopback(f"{event} to {host!r}: tests may only talk to 127.0.0.1")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    _GUARD["on"], _GUARD["bad"] = True, []
    try:
        yield
    finally:
        _GUARD["on"] = False
    assert _GUARD["bad"] == [], f"non-loopback network use: {_GUARD['bad']}"


# ---- helpers -------------------------------------------------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FitFake]:
    with fit_server() as server:
        server.access_tokens.add(ACCESS)
        server.refresh_tokens.add(REFRESH)
        yield server


def reader(fake: FitFake, sleeps: list[float] | None = None, token: str = ACCESS, refresh: str = REFRESH,
           **kwargs: Any) -> FitRestReader:
    credentials = Credentials(token=token, refresh_token=refresh, token_uri=fake.token_uri,
                              client_id="wearfhir-test.apps.googleusercontent.com", client_secret=SECRET)
    retry = RetryPolicy(max_attempts=4, base_seconds=0.001, cap_seconds=0.001)
    out = [] if sleeps is None else sleeps
    return FitRestReader(build_fitness(credentials, fake.endpoint), retry=retry, sleep=out.append, seed=7,
                         **kwargs)


def samples(items: list[SampleBatch | Rejection], metric: str | None = None) -> list[Sample]:
    return [s for i in items if isinstance(i, SampleBatch) for s in i.samples if metric in (None, s.metric)]


def steps_point(start_ns: int, end_ns: int, steps: int) -> dict[str, Any]:
    return point("com.google.step_count.delta", start_ns, end_ns, {"intVal": steps})


def only(stream: str, feed: str) -> list[StreamChoice]:
    return [StreamChoice(feed, stream, "designated")]


def real_listing(fake: FitFake) -> None:
    fake.load_listing(LISTING)


# ---- the guard and the client ----------------------------------------------------------------------------------------
def test_the_loopback_guard_refuses_any_other_host() -> None:
    with pytest.raises(NonLoopback):
        socket.getaddrinfo("fitness.googleapis.com", 443)
    with pytest.raises(NonLoopback), socket.socket() as sock:
        sock.settimeout(0.5)
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed, and refused before any packet leaves
    assert [b[1] for b in _GUARD["bad"]] == ["fitness.googleapis.com", "192.0.2.1"]
    _GUARD["bad"].clear()


def test_the_real_client_builds_offline_from_its_bundled_discovery_document() -> None:
    credentials = Credentials(token=ACCESS)
    assert build_fitness(credentials)._baseUrl == "https://fitness.googleapis.com/fitness/v1/users/"
    assert build_fitness(credentials, "http://127.0.0.1:9/fitness/v1/users/")._baseUrl == \
        "http://127.0.0.1:9/fitness/v1/users/"


# ---- streams and windows on real bodies ----------------------------------------------------------------------------
def test_designated_streams_on_the_real_88_stream_listing(fake: FitFake) -> None:
    real_listing(fake)
    chosen = reader(fake).designated_streams(PATIENT)
    # by hand: the listing has estimated_steps (so merge_step_deltas, top_level and raw steps are not read), the
    # merged and resting heart-rate streams, a merged sleep-segment stream (so legacy activity-segment sleep is
    # not read) and no weight, height, blood pressure, glucose, SpO2 or temperature stream
    assert {k: (c.stream, c.rule) for k, c in chosen.items()} == {
        "steps": (STEPS, "designated"),
        "heart_rate": (HEART, "designated"),
        "resting_heart_rate": (RESTING, "designated"),
        "sleep": (SLEEP, "designated"),
    }
    assert [s.path for s in fake.seen] == ["/fitness/v1/users/me/dataSources"]
    assert fake.seen[0].token == ACCESS


def test_a_window_over_the_real_listing_reads_one_stream_per_feed(fake: FitFake) -> None:
    real_listing(fake)
    fake.add_body(SAMPLES / "datasets" / "heart_rate_merge_heart_rate_bpm.json")
    fake.add_body(SAMPLES / "datasets" / "empty_estimated_steps_no_point_key.json")
    fake.add_body(SAMPLES / "datasets" / "steps_merge_step_deltas.json")  # present, but not the designated stream
    result = reader(fake).sync_window(PATIENT, ZONE, *WINDOW)
    heart = samples(result.items, "heart_rate")
    assert [s.value for s in heart] == [54, 58.0]
    assert [s.record_id for s in heart] == ["1422632268186000000-1422632268186000000",
                                            "1436538872914000000-1436538873915000000"]
    assert {s.source.name for s in heart} == {HEART}
    assert samples(result.items, "steps") == []  # merge_step_deltas is never read: estimated_steps is designated
    assert result.points == {"com.google.heart_rate.bpm": 2}
    assert result.samples == {"heart_rate": 2}
    read = sorted(s.path.split("/")[6] for s in fake.dataset_requests())
    assert read == sorted([STEPS, HEART, RESTING, SLEEP])
    assert all(s.path.endswith(f"/datasets/{WINDOW[0]}-{WINDOW[1]}") for s in fake.dataset_requests())


def test_real_weight_height_and_step_bodies_parse_through_rest(fake: FitFake) -> None:
    fake.set_listing([data_source(WEIGHT, [("weight", "floatPoint")]), data_source(HEIGHT, [("height", "floatPoint")]),
                      data_source(MERGE_STEPS, [("steps", "integer")])])
    for name in ("weight_merge_weight", "height_merge_height", "steps_merge_step_deltas"):
        fake.add_body(SAMPLES / "datasets" / f"{name}.json")
    items = list(reader(fake).read_window(PATIENT, ZONE, *WINDOW))
    assert [s.value for s in samples(items, "body_weight")] == [
        float(str(np.float32(x))) for x in (72.0999984741211, 72, 75.75070190429688)] == [72.1, 72.0, 75.7507]
    heights = [float(str(np.float32(x))) for x in (1.8287990093231201, 1.828800082206726)]  # metres
    assert [s.value for s in samples(items, "body_height")] == pytest.approx([h * 100 for h in heights], abs=1e-9)
    steps = samples(items, "steps")
    assert [(s.value, s.user_entered) for s in steps] == [(4146, False), (0, True), (17, False), (184, True)]
    assert steps[3].record_id == "1436565921162000000-1436566038006058105"  # odd end nanos, exact


def test_an_empty_dataset_without_a_point_key_gives_nothing_and_no_error(fake: FitFake) -> None:
    body = fake.add_body(SAMPLES / "datasets" / "empty_estimated_steps_no_point_key.json")
    assert "point" not in body
    r = reader(fake)
    assert list(r.read_window(PATIENT, ZONE, *WINDOW, choices=only(STEPS, "steps"))) == []
    assert (r.not_granted, r.failed, r.retries) == (set(), {}, 0)
    assert [s.status for s in fake.dataset_requests()] == [200]


def test_paging_follows_next_page_token_and_concatenates_pages_in_order(fake: FitFake) -> None:
    minute = 60 * 10**9
    for k in range(5):
        fake.points.setdefault(STEPS, []).append(steps_point(T0 + k * minute, T0 + (k + 1) * minute, 100 + k))
    items = list(reader(fake, page_size=2).read_window(PATIENT, ZONE, T0, T0 + 10 * minute,
                                                        choices=only(STEPS, "steps")))
    # Fit applies the limit from the end of the range: pages hold points 3-4, then 1-2, then 0
    assert [s.value for s in samples(items)] == [103, 104, 101, 102, 100]
    assert [len(i.samples) for i in items if isinstance(i, SampleBatch)] == [2, 2, 1]
    requests = fake.dataset_requests()
    assert [r.query.get("pageToken") for r in requests] == [None, "page-1", "page-2"]
    assert {r.query["limit"] for r in requests} == {"2"}


# ---- tokens ---------------------------------------------------------------------------------------------------------
def test_a_401_refreshes_the_token_exactly_once_and_the_request_succeeds(fake: FitFake) -> None:
    real_listing(fake)
    fake.points[STEPS] = [steps_point(T0, T0 + 60 * 10**9, 321)]
    r = reader(fake, token="ya29.expired")  # the server does not know this token: it answers 401
    items = list(r.read_window(PATIENT, ZONE, T0, T0 + 3600 * 10**9))
    assert [s.value for s in samples(items)] == [321]
    assert len(fake.token_requests) == 1
    sent = fake.token_requests[0]
    assert (sent["grant_type"], sent["refresh_token"]) == ("refresh_token", REFRESH)
    listing = [s for s in fake.seen if s.path.endswith("/dataSources")]
    assert [(s.token, s.status) for s in listing] == [("ya29.expired", 401), ("access-1", 200)]
    assert {s.token for s in fake.dataset_requests()} == {"access-1"}  # the new token is kept
    assert r.retries == 0  # the transport's refresh, not our backoff


def test_invalid_grant_on_refresh_raises_reconsent_needed_once_without_leaking_tokens(
        fake: FitFake, caplog: pytest.LogCaptureFixture) -> None:
    fake.dead_refresh_tokens.add("1//revoked")
    sleeps: list[float] = []
    r = reader(fake, sleeps, token="ya29.expired", refresh="1//revoked")
    with caplog.at_level(logging.DEBUG), pytest.raises(ReconsentNeeded) as err:
        list(r.read_window(PATIENT, ZONE, T0, T0 + 1))
    assert err.value.patient == PATIENT
    message = str(err.value)
    assert PATIENT in message and "re-link" in message
    assert "1//revoked" not in message and "ya29" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert len(fake.token_requests) == 1 and sleeps == []  # never retried in a loop
    assert "1//revoked" not in caplog.text and "ya29.expired" not in caplog.text


# ---- quota and permission errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "retry_after", "status"), [
    ("429", "7", 429), ("403rate", "3", 403), ("403user", None, 403), ("503", None, 503), ("500", "2", 500)])
def test_rate_limits_and_server_errors_are_retried_with_backoff_honouring_retry_after(
        fake: FitFake, kind: str, retry_after: str | None, status: int) -> None:
    fake.points[STEPS] = [steps_point(T0, T0 + 60 * 10**9, 55)]
    fake.fail("/datasets/", kind, retry_after, times=2)
    sleeps: list[float] = []
    r = reader(fake, sleeps)
    items = list(r.read_window(PATIENT, ZONE, T0, T0 + 3600 * 10**9, choices=only(STEPS, "steps")))
    assert [s.value for s in samples(items)] == [55]
    assert [s.status for s in fake.dataset_requests()] == [status, status, 200]
    if retry_after is not None:
        assert sleeps == [float(retry_after)] * 2  # jitter (at most 0.002 s here) never shortens Retry-After
    else:
        assert len(sleeps) == 2 and all(0.0 <= d <= 0.001 for d in sleeps)  # jitter within the cap
    assert r.retries == 2 and r.not_granted == set()


def test_retries_are_bounded_then_a_service_error(fake: FitFake) -> None:
    fake.points[STEPS] = [steps_point(T0, T0 + 60 * 10**9, 55)]
    fake.fail("/datasets/", "429", "1", times=10)
    sleeps: list[float] = []
    with pytest.raises(ServiceError, match="after 4 attempts"):
        list(reader(fake, sleeps).read_window(PATIENT, ZONE, T0, T0 + 1, choices=only(STEPS, "steps")))
    assert len(fake.dataset_requests()) == 4 and sleeps == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("kind", ["forbidden", "insufficientPermissions"])
def test_a_403_on_one_type_marks_it_not_granted_and_the_other_types_go_on(fake: FitFake, kind: str) -> None:
    real_listing(fake)
    fake.forbidden["com.google.heart_rate.bpm"] = kind
    fake.points[STEPS] = [steps_point(T0, T0 + 60 * 10**9, 77)]
    fake.points[SLEEP] = [point("com.google.sleep.segment", T0, T0 + 3600 * 10**9, {"intVal": 5})]
    sleeps: list[float] = []
    r = reader(fake, sleeps)
    result = r.sync_window(PATIENT, ZONE, T0, T0 + 7200 * 10**9)
    assert result.not_granted == r.not_granted == {"com.google.heart_rate.bpm"}
    assert [s.value for s in samples(result.items, "steps")] == [77]
    assert [s.code for s in samples(result.items, "sleep")] == ["asleep_deep"]
    heart = [s for s in fake.dataset_requests() if ":com.google.heart_rate.bpm:" in s.path]
    assert [s.status for s in heart] == [403]  # not retried, and the resting stream of that type is skipped
    assert sleeps == []


def test_another_refusal_on_one_stream_is_recorded_and_the_rest_continues(fake: FitFake) -> None:
    fake.points[STEPS] = [steps_point(T0, T0 + 60 * 10**9, 12)]
    fake.fail(HEART, "404")
    r = reader(fake)
    items = list(r.read_window(PATIENT, ZONE, T0, T0 + 3600 * 10**9,
                               choices=[*only(HEART, "heart_rate"), *only(STEPS, "steps")]))
    assert [s.value for s in samples(items)] == [12]
    assert r.failed == {HEART: 404} and r.not_granted == set()


# ---- determinism and exact time ------------------------------------------------------------------------------------
def observation_ids(items: list[SampleBatch | Rejection]) -> list[str]:
    system = identifier_system(DEFAULT_IDENTIFIER_BASE, "sample")
    return [resource_id("sample", system, sample_identifier_value(s)) for s in samples(items)]


def test_reading_the_same_window_twice_gives_identical_samples_and_ids(fake: FitFake) -> None:
    real_listing(fake)
    fake.add_body(SAMPLES / "datasets" / "heart_rate_merge_heart_rate_bpm.json")
    fake.points[STEPS] = [steps_point(1436558400000000000, 1436560200000000000, 42)]
    first = reader(fake).sync_window(PATIENT, ZONE, *WINDOW).items
    second = reader(fake).sync_window(PATIENT, ZONE, *WINDOW).items
    assert samples(first) == samples(second) and len(samples(first)) == 3
    ids = observation_ids(first)
    assert ids == observation_ids(second) and len(set(ids)) == 3


def test_a_nanosecond_timestamp_survives_exactly(fake: FitFake) -> None:
    ns = 1738156736058456668  # above 2^53: a float would round it
    start, end = ns - 1, ns + 1
    assert int(float(ns)) != ns and int(float(start)) != start
    fake.points[STEPS] = [steps_point(ns, ns, 9)]
    r = reader(fake)
    items = list(r.read_window(PATIENT, ZONE, start, end, choices=only(STEPS, "steps")))
    assert [s.record_id for s in samples(items)] == [f"{ns}-{ns}"]
    assert fake.dataset_requests()[0].path.endswith(f"/datasets/{start}-{end}")
    with pytest.raises(TypeError):
        list(r.read_window(PATIENT, ZONE, float(start), end, choices=only(STEPS, "steps")))  # type: ignore[arg-type]


def test_logs_carry_stream_ids_and_counts_never_tokens_or_values(fake: FitFake,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    real_listing(fake)
    fake.points[STEPS] = [steps_point(T0, T0 + 60 * 10**9, 98765)]
    fake.fail("/datasets/", "429", "1")
    with caplog.at_level(logging.DEBUG):
        reader(fake, token="ya29.expired").sync_window(PATIENT, ZONE, T0, T0 + 3600 * 10**9)
    text = caplog.text
    assert STEPS in text and "1 points in window" in text and "retry 1" in text
    for secret in (REFRESH, "ya29.expired", "access-1", SECRET, "98765"):
        assert secret not in text


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from connectors.google_fit.rest import _retry_after

    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert _retry_after({"retry-after": "12"}) == 12.0
    assert 25.0 <= (_retry_after({"retry-after": later}) or 0.0) <= 30.0
    assert _retry_after({"retry-after": "soon"}) is None and _retry_after({}) is None
