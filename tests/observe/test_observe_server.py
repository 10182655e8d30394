"""Through a real HTTP server (uvicorn in a subprocess, the harness app mounting observe/'s router):
traces with the right spans and counts, the trace header, scores, tenant scoping, /metrics, graceful
shutdown under load, and OTLP export to a separate receiver process."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ossgate.observe.store import TraceStore

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "alpha beta gamma my mail is a@b.io"}]


def wait_for_trace(client: httpx.Client, trace_id: str) -> dict:
    r = client.get(f"/v1/traces/{trace_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_request_produces_trace_with_spans_and_counts(harness) -> None:
    server = harness(capture="full", capture_reasoning="true",
                     prices='{"gpt-oss-20b": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 4}}')
    with server.client() as c:
        r = c.post(CHAT, json={"messages": MESSAGES, "max_tokens": 6, "collection": "docs", "tool": "browser",
                               "reasoning": "think about it", "cached_tokens": 2, "user": "u7",
                               "session_id": "chat-1"})
        assert r.status_code == 200, r.text
        trace_id = r.headers["x-ossgate-trace-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
        t = wait_for_trace(c, trace_id)
    names = [s["name"] for s in t["spans"]]
    assert names == ["request", "auth", "guard.input", "retrieval", "generation", "tool.browser", "guard.output"]
    spans = {s["name"]: s for s in t["spans"]}
    assert spans["tool.browser"]["parent_id"] == spans["generation"]["span_id"]
    assert spans["retrieval"]["attrs"] == {"collection": "docs", "top_k": 3}
    assert (t["tenant_id"], t["key_id"], t["user_id"], t["session_id"]) == ("acme", "key-acme", "u7", "chat-1")
    assert (t["model"], t["backend"], t["fallback"], t["status"], t["http_status"]) == (
        "gpt-oss-20b", "native", False, "ok", 200)
    # prompt words: 3 + 7; output: 3 reasoning + 6 visible
    assert (t["input_tokens"], t["output_tokens"], t["reasoning_tokens"], t["cached_tokens"]) == (10, 9, 3, 2)
    assert t["response"] == "alpha beta gamma my mail is"
    assert t["reasoning"] == "think about it"
    assert t["cost_tokens_usd"] == pytest.approx((10 * 1 + 9 * 4) / 1e6)
    assert 0 < t["ttft_s"] <= t["latency_s"] and t["tpot_s"] is not None
    assert t["attrs"] == {"max_tokens": 6}


def test_streaming_errors_fallback_and_filters(harness) -> None:
    server = harness()
    with server.client() as c:
        with c.stream("POST", CHAT, json={"messages": MESSAGES, "stream": True, "max_tokens": 4,
                                           "fallback": True, "token_delay": 0.01}) as r:
            streamed_id = r.headers["x-ossgate-trace-id"]
            chunks = [line for line in r.iter_lines() if line.startswith("data:")]
        assert chunks[-1] == "data: [DONE]" and len(chunks) == 5
        failed = c.post(CHAT, json={"messages": MESSAGES, "fail": "engine"})
        assert failed.status_code == 500
        refused = c.post(CHAT, json={"messages": MESSAGES, "fail": "guard"})
        assert refused.status_code == 400
        unauth = httpx.post(server.base_url + CHAT, json={"messages": MESSAGES})
        assert unauth.status_code == 401

        s = wait_for_trace(c, streamed_id)
        assert s["stream"] is True and s["fallback"] is True and s["fallback_from"] == "upstream-vllm"
        assert s["output_tokens"] == 4 and s["ttft_s"] >= 0.01 and s["tpot_s"] >= 0.005
        e = wait_for_trace(c, failed.headers["x-ossgate-trace-id"])
        assert (e["status"], e["error_type"], e["http_status"]) == ("error", "RuntimeError", 500)
        assert {x["name"]: x["status"] for x in e["spans"]}["generation"] == "error"
        g = wait_for_trace(c, refused.headers["x-ossgate-trace-id"])
        assert (g["error_type"], g["http_status"]) == ("InvalidRequest", 400)
        assert [x["name"] for x in g["spans"]] == ["request", "auth", "guard.input"]
        # The unauthenticated request is traced too, without tenant.
        with server.client("sk-test-admin") as admin:
            a = wait_for_trace(admin, unauth.headers["x-ossgate-trace-id"])
            assert (a["error_type"], a["http_status"], a["tenant_id"]) == ("AuthError", 401, None)

        time.sleep(0.2)  # let the writer's 50 ms flush interval pass so lists see everything
        listed = c.get("/v1/traces", params={"status": "error", "limit": 10}).json()
        assert {t["trace_id"] for t in listed["data"]} == {failed.headers["x-ossgate-trace-id"],
                                                          refused.headers["x-ossgate-trace-id"]}
        assert c.get("/v1/traces", params={"fallback": "true"}).json()["data"][0]["trace_id"] == streamed_id
        assert c.get("/v1/traces", params={"q": "alpha BETA"}).json()["data"]
        page = c.get("/v1/traces", params={"limit": 2}).json()
        assert page["has_more"] is True and page["next_offset"] == 2
        stats = c.get("/v1/traces/stats", params={"since": "1h"}).json()
        assert stats["totals"]["requests"] == 3 and stats["totals"]["errors"] == 2  # acme's own
        assert c.get("/v1/traces", params={"since": "yesterday-ish"}).status_code == 400
        assert c.get("/v1/traces/" + "0" * 32).status_code == 404


def test_tenants_see_only_their_traces_and_scores_round_trip(harness) -> None:
    server = harness()
    with server.client("sk-test-acme") as acme, server.client("sk-test-beta") as beta:
        trace_id = acme.post(CHAT, json={"messages": MESSAGES}).headers["x-ossgate-trace-id"]
        beta.post(CHAT, json={"messages": MESSAGES})
        # Scored immediately: the trace may still be in the writer's queue, which must not matter.
        r = acme.post(f"/v1/traces/{trace_id}/scores", json={"kind": "thumbs", "value": "down", "comment": "wrong"})
        assert r.status_code == 201, r.text
        acme.post(f"/v1/traces/{trace_id}/scores", json={"name": "accuracy", "kind": "numeric", "value": 0.75})
        acme.post(f"/v1/traces/{trace_id}/scores", json={"name": "topic", "kind": "categorical", "label": "billing"})
        bad = acme.post(f"/v1/traces/{trace_id}/scores", json={"kind": "numeric", "value": "lots"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "value"
        assert beta.get(f"/v1/traces/{trace_id}").status_code == 404
        assert beta.post(f"/v1/traces/{trace_id}/scores", json={"kind": "thumbs", "value": "up"}).status_code == 404
        scores = wait_for_trace(acme, trace_id)["scores"]
        assert [(s["name"], s["kind"], s["value"], s["label"]) for s in scores] == [
            ("user_feedback", "thumbs", 0.0, "down"), ("accuracy", "numeric", 0.75, None),
            ("topic", "categorical", None, "billing")]
        assert scores[0]["comment"] == "wrong"
        time.sleep(0.2)
        assert {t["tenant_id"] for t in beta.get("/v1/traces").json()["data"]} == {"beta"}
    with server.client("sk-test-admin") as admin:
        assert {t["tenant_id"] for t in admin.get("/v1/traces").json()["data"]} == {"acme", "beta"}
    assert httpx.get(server.base_url + "/v1/traces").status_code == 401


def test_metrics_are_scraped_and_parsed(harness) -> None:
    server = harness()
    with server.client() as c:
        for _ in range(3):
            c.post(CHAT, json={"messages": MESSAGES, "max_tokens": 5, "reasoning": "hmm", "cached_tokens": 1})
        c.post(CHAT, json={"messages": MESSAGES, "fail": "engine"})
        c.post(CHAT, json={"messages": MESSAGES, "fallback": True})
        r = c.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    m = "gpt-oss-20b"
    assert value("ossgate:requests_total", model_name=m, status="ok") == 4
    assert value("ossgate:requests_total", model_name=m, status="error") == 1
    assert value("ossgate:e2e_request_latency_seconds_count", model_name=m) == 5
    assert value("ossgate:time_to_first_token_seconds_count", model_name=m) == 5
    assert value("ossgate:inter_token_latency_seconds_count", model_name=m) >= 3
    assert value("ossgate:tokens_total", model_name=m, token_type="output") == 3 * 6 + 64
    assert value("ossgate:tokens_total", model_name=m, token_type="reasoning") == 3
    assert value("ossgate:tokens_total", model_name=m, token_type="cached") == 3
    assert value("ossgate:fallbacks_total", model_name=m, from_backend="upstream-vllm", to_backend="native") == 1
    assert value("ossgate:num_requests_running", model_name=m) >= 0
    assert value("ossgate:num_requests_waiting", model_name=m) == 0
    assert value("ossgate:kv_cache_usage_perc", model_name=m) == 0.25
    assert ("ossgate:trace_queue_dropped_total", (("reason", "full"),)) not in samples or \
        value("ossgate:trace_queue_dropped_total", reason="full") == 0
    assert value("gen_ai_client_token_usage_count", gen_ai_operation_name="chat", gen_ai_request_model=m,
                 gen_ai_token_type="input") == 5
    assert value("gen_ai_server_time_to_first_token_seconds_count", gen_ai_operation_name="chat",
                 gen_ai_request_model=m) == 5


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_sigterm_mid_load_flushes_every_accepted_trace(harness, request, tmp_path, store: str) -> None:
    url = f"sqlite:///{tmp_path / 'shutdown.db'}" if store == "sqlite" else request.getfixturevalue("pg_url")
    # A writer that would sit on its traces for a minute: only the shutdown drain can write them.
    server = harness(store_url=url, flush_interval_s="60", batch_size="5000", queue_size="20000")
    received: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=server.base_url, headers={"authorization": "Bearer sk-test-acme"},
                          timeout=30) as c:
            for _ in range(2000):  # bounded; ends when the server goes away
                if stop.is_set():
                    return
                try:
                    r = c.post(CHAT, json={"messages": MESSAGES, "max_tokens": 8, "token_delay": 0.002})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    with lock:
                        received.append(r.headers["x-ossgate-trace-id"])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client_loop) for _ in range(8)]
        while len(received) < 150:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(60)
        stop.set()
        for f in futures:
            f.result()
    log = server.log_path.read_text()
    m = re.search(r"OBSERVE-CLOSED accepted=(\d+) written=(\d+) dropped=(\d+)", log)
    assert m, log
    accepted, written, dropped = map(int, m.groups())
    assert dropped == 0 and written == accepted
    store_ = TraceStore(url)
    try:
        stored = {r["trace_id"] for r in store_.iter_all()}
    finally:
        store_.close()
    assert len(stored) == accepted
    assert set(received) <= stored  # every response a client got has its trace
    assert len(received) >= 150


def test_otlp_spans_reach_a_receiver_process(harness, otlp_receiver) -> None:
    endpoint, out = otlp_receiver
    server = harness(otlp_endpoint=endpoint, capture="redacted")
    with server.client() as c:
        r = c.post(CHAT, json={"messages": MESSAGES, "max_tokens": 3, "tool": "python", "session_id": "conv-9"})
        trace_id = r.headers["x-ossgate-trace-id"]
    server.stop()  # shutdown flushes the OTLP batch processor too
    spans = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [s for s in spans if s["trace_id"] == trace_id]
    by_name = {s["name"]: s for s in mine}
    assert set(by_name) == {"chat gpt-oss-20b", "auth", "guard.input", "execute_tool python", "guard.output"} or \
        len(mine) == 6, sorted(by_name)
    roots = [s for s in mine if s["parent_span_id"] is None]
    assert len(roots) == 1
    root = roots[0]
    attrs = root["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-oss-20b"
    assert attrs["gen_ai.usage.input_tokens"] == 10 and attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["gen_ai.conversation.id"] == "conv-9"
    assert attrs["gen_ai.response.finish_reasons"] == ["length"]
    assert "[EMAIL]" in attrs["gen_ai.input.messages"] and "a@b.io" not in attrs["gen_ai.input.messages"]
    assert root["resource"]["service.name"] == "ossgate"
    tool = by_name["execute_tool python"]
    assert tool["attributes"]["gen_ai.tool.name"] == "python"
    generation = [s for s in mine if s["attributes"].get("gen_ai.operation.name") == "chat" and s is not root]
    assert len(generation) == 1 and tool["parent_span_id"] == generation[0]["span_id"]
    assert all(root["start_ns"] <= s["start_ns"] <= s["end_ns"] <= root["end_ns"] + 1_000_000 for s in mine)
