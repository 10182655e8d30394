"""The dashboard end to end in headless Chromium (Playwright driving Debian's /usr/bin/chromium):
it loads behind the API key, draws the charts, filters and searches the trace table, shows a trace's
span waterfall and content, and records a thumbs-up. Screenshots go to artifacts/observe/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

ARTIFACTS = Path(os.environ.get("OSSGATE_TEST_ARTIFACTS", Path(__file__).parents[2] / "artifacts")) / "observe"
CHROMIUM = os.environ.get("OSSGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set OSSGATE_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def test_dashboard_loads_filters_and_shows_a_trace(harness, browser) -> None:
    server = harness(capture="full")
    chat = server.base_url + "/v1/chat/completions"
    auth = {"authorization": "Bearer sk-test-acme"}
    with httpx.Client(headers=auth, timeout=30) as c:
        for i in range(6):
            c.post(chat, json={"model": "gpt-oss-20b" if i % 2 else "gpt-oss-120b",
                               "messages": [{"role": "user", "content": f"question number {i} about cats"}],
                               "max_tokens": 5 + i, "collection": "docs" if i == 3 else None})
        c.post(chat, json={"messages": [{"role": "user", "content": "find the needle please"}], "tool": "browser",
                           "reasoning": "look around", "max_tokens": 4})
        failed = c.post(chat, json={"messages": [{"role": "user", "content": "this one breaks"}], "fail": "engine"})
        assert failed.status_code == 500
        c.get(server.base_url + "/v1/traces")  # nothing to wait on: the writer flushes every 50 ms
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.base_url + "/ui")
    assert page.title() == "ossgate · traces"
    page.wait_for_selector("text=Enter an API key")

    # A wrong key is refused by the same auth as the API.
    page.fill("#api-key", "sk-wrong")
    page.click("#key-form button")
    page.wait_for_selector("#message:has-text('401')")

    page.fill("#api-key", "sk-test-acme")
    page.click("#key-form button")
    rows = page.locator("#traces tbody tr[data-trace-id]")
    rows.nth(7).wait_for()
    assert rows.count() == 8
    page.wait_for_selector("#chart-requests polyline, #chart-requests circle")
    assert page.locator("#chart-latency polyline, #chart-latency circle").count() >= 1
    assert page.locator("#by-key td", has_text="key-acme").count() == 1
    page.screenshot(path=str(ARTIFACTS / "ui-overview.png"), full_page=True)

    # Filter by status: only the failed request.
    page.select_option("#f-status", "error")
    page.wait_for_function("document.querySelectorAll('#traces tbody tr[data-trace-id]').length === 1")
    assert rows.first.get_attribute("data-trace-id") == failed.headers["x-ossgate-trace-id"]
    page.select_option("#f-status", "")
    # Filter by model from the facet drop-down.
    page.wait_for_selector("#f-model option[value='gpt-oss-120b']", state="attached")
    page.select_option("#f-model", "gpt-oss-120b")
    page.wait_for_function("document.querySelectorAll('#traces tbody tr[data-trace-id]').length === 3")
    page.select_option("#f-model", "")
    # Free-text search.
    page.fill("#q", "needle")
    page.wait_for_function("document.querySelectorAll('#traces tbody tr[data-trace-id]').length === 1")
    page.screenshot(path=str(ARTIFACTS / "ui-search.png"), full_page=True)

    # Open the trace: facts, waterfall with every stage, content, then a thumbs-up.
    rows.first.click()
    detail = page.locator("#detail")
    detail.wait_for(state="visible")
    waterfall = page.locator("#waterfall .wf-row")
    waterfall.first.wait_for()
    assert [waterfall.nth(i).get_attribute("data-span") for i in range(waterfall.count())] == [
        "request", "auth", "guard.input", "generation", "tool.browser", "guard.output"]
    assert "find the needle please" in detail.inner_text()
    assert page.locator("[data-testid=response]").inner_text().endswith("find the needle please")
    page.fill("#score-comment", "spot on")
    page.click("[data-thumb=up]")
    page.wait_for_selector("#d-scores li:has-text('spot on')")
    page.screenshot(path=str(ARTIFACTS / "ui-trace.png"), full_page=True)
    assert errors == []

    trace_id = rows.first.get_attribute("data-trace-id")
    with httpx.Client(headers=auth) as c:
        scores = c.get(f"{server.base_url}/v1/traces/{trace_id}").json()["scores"]
    assert [(s["kind"], s["label"], s["comment"]) for s in scores] == [("thumbs", "up", "spot on")]


def test_an_older_answer_arriving_last_does_not_overwrite_a_newer_filter(harness, browser) -> None:
    server = harness(capture="full")
    auth = {"authorization": "Bearer sk-test-acme"}
    with httpx.Client(headers=auth, timeout=30) as c:
        for model in ("gpt-oss-20b", "gpt-oss-120b", "gpt-oss-120b"):
            c.post(server.base_url + "/v1/chat/completions",
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        c.get(server.base_url + "/v1/traces")
    page = browser.new_page()
    page.goto(server.base_url + "/ui")
    page.evaluate("localStorage.setItem('ossgate.apiKey', 'sk-test-acme')")
    page.reload()
    rows = page.locator("#traces tbody tr[data-trace-id]")
    rows.nth(2).wait_for()
    page.wait_for_selector("#f-model option[value='gpt-oss-20b']", state="attached")

    held = []  # the unfiltered table request, answered only after the filtered one

    def hold(route) -> None:
        if "model=" in route.request.url:
            route.continue_()
        else:
            held.append(route)

    page.route("**/v1/traces?*", hold)
    page.click("#refresh")
    page.select_option("#f-model", "gpt-oss-20b")
    page.wait_for_function("document.querySelectorAll('#traces tbody tr[data-trace-id]').length === 1")
    assert len(held) == 1
    with page.expect_response(lambda r: r.request == held[0].request):
        held[0].continue_()
    page.wait_for_timeout(300)  # time for a stale answer to be drawn (it must not be)
    assert rows.count() == 1 and "gpt-oss-20b" in rows.first.inner_text()
