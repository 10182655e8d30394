"""Tracer: spans, content capture modes, cost, the bounded queue (drops counted, never blocks), flush."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ossgate.errors import InvalidRequest, NotFound
from ossgate.observe import Metrics, ModelPrice, ObserveSettings, ThroughputMeter, Tracer
from ossgate.observe.cost import PriceModel
from ossgate.observe.redact import redact

SECRET_PROMPT = [{"role": "system", "content": "be brief"},
                 {"role": "user",
                  "content": "mail jane.doe@example.com or call +1 415 555 0100, key sk-abcdef1234567890"}]


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    body, _ = metrics.payload()
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                return s.value
    return 0.0


def traced_request(tracer: Tracer, **fields) -> str:
    trace = tracer.start(model="gpt-oss-20b", key_id="k1", tenant_id="acme", **fields)
    with trace.span("auth"):
        pass
    with trace.span("generation") as gen:
        trace.first_token()
        with trace.span("tool.browser", tool="browser"):
            pass
        gen.set(temperature=0.7)
    trace.record(input_tokens=12, output_tokens=30, reasoning_tokens=10, cached_tokens=4, finish_reason="stop")
    trace.capture(prompt=SECRET_PROMPT, response="reach me at bob@corp.io", reasoning="user wants contact info")
    assert tracer.finish(trace)
    return trace.trace_id


@pytest.fixture
def make_tracer(tmp_path: Path):
    made: list[Tracer] = []

    def make(**kw) -> Tracer:
        kw.setdefault("store_url", f"sqlite:///{tmp_path / 'traces.db'}")
        kw.setdefault("flush_interval_s", 0.05)
        tracer = Tracer(ObserveSettings(**kw), metrics=Metrics())
        made.append(tracer)
        return tracer

    yield make
    for t in made:
        t.close()


def test_spans_nest_and_counts_are_kept(make_tracer) -> None:
    tracer = make_tracer()
    trace_id = traced_request(tracer, session_id="sess-1", user_id="u1")
    tracer.flush()
    got = tracer.get(trace_id)
    names = {s["name"]: s for s in got["spans"]}
    assert list(names) == ["request", "auth", "generation", "tool.browser"]
    assert names["tool.browser"]["parent_id"] == names["generation"]["span_id"]
    assert names["auth"]["parent_id"] == names["request"]["span_id"]
    assert names["generation"]["attrs"] == {"temperature": 0.7}
    assert (got["session_id"], got["user_id"], got["finish_reason"]) == ("sess-1", "u1", "stop")
    assert got["ttft_s"] is not None and got["ttft_s"] <= got["latency_s"]
    assert got["tpot_s"] is not None
    assert all(s["end_ms"] >= s["start_ms"] for s in got["spans"])


def test_async_spans_and_errors_are_recorded(make_tracer) -> None:
    tracer = make_tracer()
    trace = tracer.start(model="m")

    async def stage() -> None:
        async with trace.span("retrieval"), trace.span("embed"):
            await asyncio.sleep(0)
        with pytest.raises(ValueError), trace.span("guard.output"):
            raise ValueError("bad output")

    asyncio.run(stage())
    trace.fail(ValueError("bad output"))
    tracer.finish(trace)
    with pytest.raises(InvalidRequest):
        tracer.finish(trace)
    tracer.flush()
    got = tracer.get(trace.trace_id)
    spans = {s["name"]: s for s in got["spans"]}
    assert spans["embed"]["parent_id"] == spans["retrieval"]["span_id"]
    assert spans["guard.output"]["status"] == "error" and spans["guard.output"]["error_type"] == "ValueError"
    assert (got["status"], got["error_type"], got["http_status"]) == ("error", "ValueError", 500)


@pytest.mark.parametrize("mode", ["full", "redacted", "off"])
@pytest.mark.parametrize("reasoning", [False, True])
def test_content_capture_modes(make_tracer, mode: str, reasoning: bool) -> None:
    tracer = make_tracer(capture=mode, capture_reasoning=reasoning)
    trace_id = traced_request(tracer)
    tracer.flush()
    got = tracer.get(trace_id)
    stored = " ".join(str(got.get(k)) for k in ("prompt", "response", "reasoning", "preview"))
    if mode == "full":
        assert got["prompt"] == SECRET_PROMPT
        assert got["response"] == "reach me at bob@corp.io"
        assert "jane.doe@example.com" in got["preview"]
    elif mode == "redacted":
        assert got["prompt"][0] == {"role": "system", "content": "be brief"}
        assert got["prompt"][1]["content"] == "mail [EMAIL] or call [PHONE], key [SECRET]"
        assert got["response"] == "reach me at [EMAIL]"
        for secret in ("jane.doe", "415 555", "sk-abcdef", "bob@corp"):
            assert secret not in stored
    else:
        assert got["prompt"] is None and got["response"] is None and got["preview"] is None
    assert got["capture"] == mode
    if reasoning and mode != "off":
        assert got["reasoning"] == "user wants contact info"
    else:
        assert got["reasoning"] is None
    # Counts are kept whatever the content policy.
    assert (got["input_tokens"], got["output_tokens"], got["reasoning_tokens"], got["cached_tokens"]) == (12, 30, 10, 4)


def test_redactor_masks_common_pii() -> None:
    text = "card 4111 1111 1111 1111, ssn 123-45-6789, ip 10.0.0.12, Bearer abcdefghijklmnop, x@y.org"
    assert redact(text) == "card [CARD], ssn [SSN], ip [IP], Bearer [SECRET], [EMAIL]"


def test_queue_overflow_drops_and_counts_without_blocking(make_tracer, tmp_path: Path) -> None:
    tracer = make_tracer(queue_size=4, batch_size=2)
    tracer.flush()
    # Hold SQLite's write lock from another connection: the writer thread stalls inside its first write,
    # exactly as it would behind a slow disk or an unreachable PostgreSQL.
    blocker = sqlite3.connect(tmp_path / "traces.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    results: list[bool] = []

    def load() -> None:
        for _ in range(40):
            trace = tracer.start(model="m")
            results.append(tracer.finish(trace))

    worker = threading.Thread(target=load)
    worker.start()
    worker.join(20)  # finishing 40 traces takes milliseconds unless finish() blocks on the stalled store
    stalled = worker.is_alive()
    blocker.execute("COMMIT")
    blocker.close()
    worker.join()
    assert not stalled, "Tracer.finish blocked while the store was stalled"
    accepted, dropped = results.count(True), results.count(False)
    assert accepted + dropped == 40
    assert dropped >= 40 - 4 - 2  # at most the queue plus one batch in the writer's hands
    assert tracer.writer.dropped == dropped
    assert sample(tracer.metrics, "ossgate:trace_queue_dropped_total", {"reason": "full"}) == dropped
    tracer.close()
    assert tracer.store is not None
    from ossgate.observe.store import TraceStore
    check = TraceStore(f"sqlite:///{tmp_path / 'traces.db'}")
    assert check.count() == accepted  # every accepted trace was written once the store came back
    check.close()


def test_close_flushes_everything_accepted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'traces.db'}"
    # A long flush interval and big batches: nothing would be written before close() without the drain.
    tracer = Tracer(ObserveSettings(store_url=url, flush_interval_s=60, batch_size=1000, queue_size=5000),
                    metrics=Metrics())
    ids = [traced_request(tracer) for _ in range(1500)]
    tracer.close()
    from ossgate.observe.store import TraceStore
    store = TraceStore(url)
    assert store.count() == 1500 == tracer.writer.accepted
    assert store.exists(ids[0]) and store.exists(ids[-1])
    assert not tracer.finish(tracer.start(model="late"))  # after close: dropped, counted
    assert sample(tracer.metrics, "ossgate:trace_queue_dropped_total", {"reason": "closed"}) == 1
    store.close()


def test_pending_trace_is_readable_and_scorable_before_it_is_written(tmp_path: Path) -> None:
    tracer = Tracer(ObserveSettings(store_url=f"sqlite:///{tmp_path / 't.db'}", flush_interval_s=60,
                                    batch_size=100), metrics=Metrics())
    tracer.flush()
    trace_id = traced_request(tracer)
    assert tracer.get(trace_id)["trace_id"] == trace_id
    score = tracer.add_score(trace_id, name="helpful", kind="thumbs", value="up", comment="great")
    assert (score["value"], score["label"]) == (1.0, "up")
    with pytest.raises(InvalidRequest):
        tracer.add_score(trace_id, name="x", kind="numeric", value="high")
    with pytest.raises(InvalidRequest):
        tracer.add_score(trace_id, name="x", kind="categorical")
    with pytest.raises(NotFound):
        tracer.add_score("f" * 32, name="x", kind="thumbs", value=True)
    tracer.close()
    from ossgate.observe.store import TraceStore
    store = TraceStore(f"sqlite:///{tmp_path / 't.db'}")
    assert store.get(trace_id)["scores"][0]["comment"] == "great"
    store.close()


def test_cost_tokens_and_hardware() -> None:
    clock = [0.0]
    prices = {"gpt-oss-20b": ModelPrice(input_usd_per_mtok=0.1, output_usd_per_mtok=0.5, cached_input_usd_per_mtok=0.01,
                                        gpu_hour_usd=2.0, gpus=2, server_hour_usd=0.4, throughput_tokens_per_s=1000),
              "*": ModelPrice(gpu_hour_usd=3.6)}
    model = PriceModel(prices, ThroughputMeter(window_s=3600, clock=lambda: clock[0]))
    cost = model.cost("gpt-oss-20b", input_tokens=1000, output_tokens=2000, cached_tokens=400)
    assert cost.tokens_usd == pytest.approx((600 * 0.1 + 400 * 0.01 + 2000 * 0.5) / 1e6)
    assert cost.hardware_usd == pytest.approx(4.4 / 3600 * 3000 / 1000)
    # Measured throughput: over an hour, the per-request hardware shares add up to the hourly price.
    model = PriceModel({"*": ModelPrice(gpu_hour_usd=3.6)}, ThroughputMeter(window_s=3600, clock=lambda: clock[0]))
    total = 0.0
    for step in range(1, 3601):
        clock[0] = float(step)
        total += model.cost("any", input_tokens=50, output_tokens=50).hardware_usd
    assert total == pytest.approx(3.6, rel=0.02)
    assert PriceModel({}).cost("free", 10, 10).tokens_usd == 0.0


def test_cost_is_stored_on_the_trace(make_tracer) -> None:
    tracer = make_tracer(prices={"gpt-oss-20b": {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}})
    trace_id = traced_request(tracer)
    tracer.flush()
    got = tracer.get(trace_id)
    assert got["cost_tokens_usd"] == pytest.approx((8 * 1.0 + 4 * 1.0 + 30 * 2.0) / 1e6)
    assert sample(tracer.metrics, "ossgate:cost_usd_total", {"kind": "tokens"}) == pytest.approx(got["cost_tokens_usd"])


def test_disabled_tracer_stores_nothing_but_counts(tmp_path: Path) -> None:
    tracer = Tracer(ObserveSettings(enabled=False, store_url=f"sqlite:///{tmp_path / 'x.db'}"), metrics=Metrics())
    trace = tracer.start(model="m")
    assert len(trace.trace_id) == 32
    assert tracer.finish(trace) is False
    assert not (tmp_path / "x.db").exists()
    assert sample(tracer.metrics, "ossgate:requests_total", {"model_name": "m", "status": "ok"}) == 1
    with pytest.raises(NotFound):
        tracer.get(trace.trace_id)
    tracer.close()


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="store_url"):
        ObserveSettings(store_url="mysql://x")
    with pytest.raises(ValueError, match="batch_size"):
        ObserveSettings(queue_size=10, batch_size=100)
    with pytest.raises(ValueError):
        ObserveSettings(capture="everything")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, ossgate_home: Path) -> None:
    monkeypatch.setenv("OSSGATE_OBSERVE_CAPTURE", "off")
    monkeypatch.setenv("OSSGATE_OBSERVE_PRICES__gpt-oss-20b__OUTPUT_USD_PER_MTOK", "0.6")
    s = ObserveSettings()
    assert s.capture == "off"
    assert s.prices["gpt-oss-20b"].output_usd_per_mtok == 0.6
    assert s.store_url == f"sqlite:///{ossgate_home / 'traces.db'}"
