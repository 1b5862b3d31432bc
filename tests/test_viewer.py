"""The SMART on FHIR viewer in a real browser (Chromium via Playwright) against the real test FHIR server.

Data: a synthetic 14-day export (CGM every 5 minutes, heart rate, steps, energy, sleep; America/New_York, DST
change inside the period) imported to NDJSON by the import flow, then written to the servers as transactions.
Modes: EHR launch and standalone launch with PKCE against ``tests/auth_server.py`` (the FHIR server refuses
requests without its token), and open-server mode against the unauthenticated test server. Browsers run in
other time zones than the data's, so a day shown under the browser's date instead of the written one fails.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from bytewax.testing import run_main

from flows.import_flow import get_flow
from tests.auth_server import SmartFhirServer, s256, smart_fhir_server
from wearfhir.report import ImportReport
from wearfhir.settings import ImportSettings
from wearfhir.synth import SynthSpec, write_export
from wearfhir.view import VIEWER_DIR, start_in_thread

CHROMIUM = Path("/usr/bin/chromium")

PATIENT = "viewer-patient"
LOINC = "http://loinc.org"
READY_BUDGET_MS = 2000.0  # issue 13: viewer ready < 2 s after data for 14 days × 288 readings


# ---- fixtures ---------------------------------------------------------------------------------------------

def synthetic(tmp: Path, patient: str, records: int) -> dict[str, list[dict[str, Any]]]:
    """The resources the import writes for a synthetic export from Monday 2024-03-04 on, by type."""
    export = write_export(tmp / "export.zip", SynthSpec(records=records, start=date(2024, 3, 4), traps=False))
    run_main(get_flow(ImportSettings(source=export, patient=f"Patient/{patient}", out=tmp / "out"), ImportReport()))
    out = {kind: [json.loads(line) for line in (tmp / "out" / f"{kind}.ndjson").read_text().splitlines()]
           for kind in ("Patient", "Device", "Observation")}
    out["Patient"][0]["name"] = [{"given": ["Vera"], "family": "Viewer"}]  # synthetic
    return out


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """14 full days (2024-03-04 … 2024-03-17): one whole CGM reporting period, 288 readings a day."""
    return synthetic(tmp_path_factory.mktemp("viewer-data"), PATIENT, 17_000)


def load(client: httpx.Client, resources: dict[str, list[dict[str, Any]]]) -> None:
    """PUT every resource in transactions (Patient and Devices first: the server checks references)."""
    ordered = resources["Patient"] + resources["Device"] + resources["Observation"]
    for i in range(0, len(ordered), 1000):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in ordered[i:i + 1000]]}
        client.post("", json=bundle, headers={"Prefer": "return=minimal"}).raise_for_status()


@pytest.fixture(scope="module")
def viewer() -> Iterator[str]:
    server, thread = start_in_thread()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def smart(tmp_path_factory: pytest.TempPathFactory, viewer: str, resources) -> Iterator[SmartFhirServer]:
    with smart_fhir_server(tmp_path_factory.mktemp("smart-fhir"), patient=PATIENT,
                           redirect_uris=[f"{viewer}/index.html"]) as server:
        with server.client() as client:
            load(client, resources)
        yield server


@pytest.fixture(scope="module")
def open_fhir(fhir, resources) -> str:
    with fhir.client() as client:
        load(client, resources)
    return str(fhir.base_url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): `make test` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def open_page(browser: Any, url: str, timezone: str) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(timezone_id=timezone, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=20_000)
    assert page.get_attribute("body", "data-state") == "ready", (page.text_content("#error"), problems)
    return context, page, problems


# ---- what the server holds (the truth the DOM is checked against) -------------------------------------------

def code_of(r: dict[str, Any]) -> str:
    return next((c["code"] for c in r["code"].get("coding", []) if c.get("system") == LOINC), "")


def window(r: dict[str, Any]) -> tuple[str, str]:
    """(window kind, local date) from the identifier the import wrote: ``patient|metric|kind|date…|stats``."""
    parts = r["identifier"][0]["value"].split("|")
    return (parts[2], parts[3][:10]) if len(parts) == 5 else ("raw", "")


def daily(obs: list[dict[str, Any]], code: str, kind: str = "day") -> dict[str, dict[str, Any]]:
    return {window(r)[1]: r for r in obs if code_of(r) == code and window(r)[0] == kind}


def stat(r: dict[str, Any], name: str) -> float:
    for c in r.get("component", []):
        if any(x.get("code") == name and x.get("system", "").endswith("observation-statistics")
               for x in c["code"].get("coding", [])):
            return float(c.get("valueQuantity", {}).get("value", c.get("valueInteger", 0)))
    raise AssertionError(f"no {name} component")


def table(page: Any, selector: str) -> dict[str, list[str]]:
    """Rows of a table by their ``data-date``: the cells' text."""
    rows = page.eval_on_selector_all(f"{selector} tbody tr", "rows => rows.map(r => [r.dataset.date, "
                                     "Array.from(r.cells).map(c => c.textContent)])")
    out = {d: cells for d, cells in rows}
    assert len(out) == len(rows), f"{selector}: a date shown twice"
    return out


def number(text: str) -> float:
    return float(re.sub(r"[^0-9.\-]", "", text))


def server_says(page: Any, resources: dict[str, list[dict[str, Any]]]) -> None:
    """The page shows the patient's numbers, each day under the local date the server's resource was written for."""
    obs = resources["Observation"]
    assert page.text_content("#patient-id") == f"Patient/{PATIENT}"
    assert page.text_content("#patient-name") == "Vera Viewer"
    # the CGM panel: one reporting period, its members' values
    panels = [r for r in obs if code_of(r) == "107931-8"]
    assert len(panels) == 1
    members = {r["id"]: r for r in obs}
    by_code = {code_of(members[m["reference"].split("/")[1]]): members[m["reference"].split("/")[1]]
               for m in panels[0]["hasMember"]}
    article = page.locator("article.period")
    assert article.count() == 1
    assert article.get_attribute("data-first") == "2024-03-04" and article.get_attribute("data-last") == "2024-03-17"
    shown = {page.get_attribute(f"#period-0-stats dd:nth-of-type({i})", "data-key"):
             page.text_content(f"#period-0-stats dd:nth-of-type({i})") for i in range(1, 6)}
    for key, code in (("mean", "97507-8"), ("gmi", "97506-0"), ("cv", "104638-2"), ("wear", "104636-6"),
                      ("active", "104637-4")):
        assert number(shown[key].split(" of ")[0]) == pytest.approx(by_code[code]["valueQuantity"]["value"], abs=0.051)
    bands = [c["valueQuantity"]["value"] for c in by_code["106793-3"]["component"]]
    ranges = page.eval_on_selector_all("#period-0-ranges tbody tr td:nth-child(2)", "t => t.map(x => x.textContent)")
    assert [number(t) for t in ranges] == pytest.approx(bands, abs=0.051)
    # CGM readings per local day: 14 days × 288 (a 23-hour DST day has fewer)
    readings: dict[str, int] = {}
    for r in obs:
        if code_of(r) == "99504-3" and "effectiveDateTime" in r:
            readings[r["effectiveDateTime"][:10]] = readings.get(r["effectiveDateTime"][:10], 0) + 1
    per_day = table(page, "#period-0-days")
    assert {d: int(number(cells[1])) for d, cells in per_day.items()} == readings
    assert sum(readings.values()) >= 13 * 288
    # daily heart rate (min–mean–max), steps, energy: each under its own local date
    hr = daily(obs, "8867-4")
    shown_hr = table(page, "#heart-rate-table")
    assert set(shown_hr) == set(hr) and len(hr) == 14
    for d, cells in shown_hr.items():
        assert cells[0] == d
        assert number(cells[1]) == stat(hr[d], "minimum") and number(cells[3]) == stat(hr[d], "maximum")
        assert number(cells[2]) == pytest.approx(hr[d]["valueQuantity"]["value"], abs=0.051)
    for selector, code in (("#steps-table", "41950-7"), ("#energy-table", "41979-6")):
        expected = daily(obs, code)
        shown_totals = table(page, selector)
        assert set(shown_totals) == set(expected)
        for d, cells in shown_totals.items():
            assert cells[0] == d and number(cells[1]) == pytest.approx(expected[d]["valueQuantity"]["value"], abs=0.5)
    nights = daily(obs, "93832-4", "night")
    shown_nights = table(page, "#sleep-table")
    assert set(shown_nights) == set(nights) and nights
    for d, cells in shown_nights.items():
        assert number(cells[1]) == pytest.approx(nights[d]["valueQuantity"]["value"], abs=0.051)


def storage(page: Any) -> tuple[int, int]:
    local, session = page.evaluate("[window.localStorage.length, window.sessionStorage.length]")
    return int(local), int(session)


# ---- tests ---------------------------------------------------------------------------------------------------------

def test_ehr_launch_with_pkce_shows_the_patients_numbers(browser, smart, viewer, resources, tmp_path) -> None:
    refused = httpx.get(f"{smart.base_url}/Observation", params={"patient": PATIENT}, timeout=10)
    assert refused.status_code == 401
    # Auckland: sleep that starts on a New York evening is on the next day there
    context, page, problems = open_page(browser, f"{viewer}/launch.html?iss={smart.base_url}&launch=launch-1",
                                        "Pacific/Auckland")
    try:
        log = smart.log()
        assert log["methods"] == ["S256"] and log["counts"]["token"] == 1 and "token_refused" not in log["counts"]
        assert log["scopes"][0].split()[0] == "launch" and "patient/Observation.rs" in log["scopes"][0].split()
        assert log["counts"]["fhir_ok"] >= 4 and log["counts"]["fhir_refused"] >= 1
        server_says(page, resources)
        local, session = storage(page)
        assert local == 0 and session >= 1  # the token is in sessionStorage (fhirclient's default), never localStorage
        assert not problems, problems
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
        shutil.copy(tmp_path / "viewer.png", "/tmp/viewer.png")
    finally:
        context.close()


def test_standalone_launch_asks_for_the_patient_context(browser, smart, viewer) -> None:
    before = len(smart.log()["methods"])
    context, page, problems = open_page(browser, f"{viewer}/launch.html?iss={smart.base_url}", "UTC")
    try:
        log = smart.log()
        assert log["methods"][before:] == ["S256"]
        scope = log["scopes"][before].split()
        assert "launch/patient" in scope and "launch" not in scope
        assert page.text_content("#patient-id") == f"Patient/{PATIENT}"
        assert page.locator("#heart-rate-table tbody tr").count() == 14
        assert storage(page)[0] == 0
    finally:
        context.close()


def test_open_server_mode_is_ready_within_two_seconds(browser, open_fhir, viewer, resources, tmp_path) -> None:
    url = f"{viewer}/index.html?fhirServiceUrl={open_fhir}&patient={PATIENT}"
    started = time.monotonic()
    # west of the data's zone: a day window written for midnight New York time is the evening before there
    context, page, problems = open_page(browser, url, "America/Los_Angeles")
    wall = (time.monotonic() - started) * 1000
    try:
        ready = page.evaluate("window.wearfhirReadyMs")
        print(f"viewer ready after {ready:.0f} ms (page load to drawn; {wall:.0f} ms wall) for "
              f"{page.locator('#period-0-days tbody tr').count()} days of CGM readings")
        server_says(page, resources)
        assert storage(page) == (0, 0)  # no launch, nothing stored
        assert not problems, problems
        page.screenshot(path=str(tmp_path / "viewer-open.png"), full_page=True)
        assert ready < READY_BUDGET_MS
    finally:
        context.close()



def test_a_sparse_period_reads_insufficient_data(browser, fhir, viewer, tmp_path) -> None:
    sparse = synthetic(tmp_path, "viewer-sparse", 2_500)  # two days of wear in a 14-day reporting period
    with fhir.client() as client:
        load(client, sparse)
    panel = next(r for r in sparse["Observation"] if code_of(r) == "107931-8")
    active = next(r for r in sparse["Observation"] if code_of(r) == "104637-4")
    context, page, _ = open_page(browser, f"{viewer}/index.html?fhirServiceUrl={fhir.base_url}&patient=viewer-sparse",
                                 "Asia/Kolkata")
    try:
        article = page.locator("article.period")
        assert article.get_attribute("data-first") == panel["effectivePeriod"]["start"][:10] == "2024-03-04"
        assert article.get_attribute("data-last") == "2024-03-17"  # the whole period, last day inclusive
        shown = page.text_content("#period-0-stats dd[data-key=active]")
        assert number(shown) == pytest.approx(active["valueQuantity"]["value"], abs=0.051) and number(shown) < 70
        assert "Insufficient data" in " ".join(page.locator("article.period .note").all_text_contents())
        assert page.text_content("#period-0-stats dd[data-key=wear]") == "2 of 14"
    finally:
        context.close()


# ---- without a browser: the authorization server and the static server ---------------------------------------------

def authorize(smart: SmartFhirServer, viewer: str, verifier: str, **extra: str) -> httpx.Response:
    params = {"response_type": "code", "client_id": "wearfhir-viewer", "redirect_uri": f"{viewer}/index.html",
              "scope": "launch patient/Observation.rs", "state": "s1", "aud": smart.base_url, "launch": "launch-1",
              "code_challenge": s256(verifier), "code_challenge_method": "S256", **extra}
    return httpx.get(f"{smart.origin}/auth/authorize", params=params, timeout=10)


def test_the_token_endpoint_checks_pkce_and_uses_each_code_once(smart, viewer) -> None:
    def token(code: str, verifier: str) -> httpx.Response:
        return httpx.post(f"{smart.origin}/auth/token", timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": f"{viewer}/index.html",
            "client_id": "wearfhir-viewer", "code_verifier": verifier})

    def code_of_redirect(response: httpx.Response) -> str:
        assert response.status_code == 302 and response.headers["location"].startswith(f"{viewer}/index.html?")
        return str(httpx.URL(response.headers["location"]).params["code"])

    assert authorize(smart, viewer, "v" * 50, code_challenge_method="plain").status_code == 400
    assert authorize(smart, viewer, "v" * 50, launch="forged").status_code == 400
    code = code_of_redirect(authorize(smart, viewer, "v" * 50))
    assert token(code, "w" * 50).status_code == 400  # wrong verifier
    assert token(code, "v" * 50).status_code == 400  # the code is spent
    good = token(code_of_redirect(authorize(smart, viewer, "v" * 50)), "v" * 50)
    assert good.status_code == 200 and good.json()["patient"] == PATIENT
    with httpx.Client(base_url=smart.base_url, timeout=10) as c:
        assert c.get(f"/Patient/{PATIENT}").status_code == 401
        assert c.get(f"/Patient/{PATIENT}", headers={"Authorization": "Bearer not-issued"}).status_code == 401
        ok = c.get(f"/Patient/{PATIENT}", headers={"Authorization": f"Bearer {good.json()['access_token']}"})
        assert ok.status_code == 200


def test_the_viewer_is_static_self_contained_and_served_with_a_strict_policy(viewer) -> None:
    page = httpx.get(f"{viewer}/index.html", timeout=5)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{viewer}/vendor/", timeout=5).status_code == 404  # no directory listing
    assert httpx.get(f"{viewer}/vendor/fhir-client.min.js", timeout=5).status_code == 200
    for html in VIEWER_DIR.glob("*.html"):
        text = html.read_text()
        assert not re.search(r"""(src|href)=["'](https?:)?//""", text), f"{html.name} loads from another origin"
        assert "<script>" not in text, f"{html.name} has an inline script (the CSP forbids it)"
    for js in ("app.js", "launch.js"):
        assert "localStorage" not in (VIEWER_DIR / js).read_text()
