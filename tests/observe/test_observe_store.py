"""TraceStore on both engines (SQLite and PostgreSQL): same schema, same code path, same answers."""

from __future__ import annotations

import time

import pytest

from ossgate.errors import InvalidRequest, NotFound
from ossgate.observe.redact import redact
from ossgate.observe.store import TraceFilter, TraceStore, percentiles
from ossgate.observe.trace import Trace, bucket_value_s, latency_bucket


def make_record(i: int, *, started_ms: int, latency_s: float = 0.5, model: str = "gpt-oss-20b", key: str = "k1",
                tenant: str = "acme", status: str = "ok", prompt: str = "hello", cost: float = 0.01) -> dict:
    t = Trace(model=model, key_id=key, tenant_id=tenant, session_id=f"s{i % 3}")
    t.started_at = started_ms / 1000
    t.latency_s = latency_s
    t.ttft_s = latency_s / 5
    t.record(input_tokens=10 + i, output_tokens=20, reasoning_tokens=5, cached_tokens=4)
    t.capture(prompt=[{"role": "user", "content": f"{prompt} {i}"}], response=f"answer {i}")
    t.cost_tokens_usd = cost
    if status != "ok":
        t.fail("RuntimeError", "boom", http_status=500)
    with t.span("generation"):
        pass
    return t.to_record("full", False, 10_000, redact)


@pytest.fixture
def store(store_url: str):
    s = TraceStore(store_url)
    yield s
    s.close()


def test_round_trip_keeps_every_field(store: TraceStore) -> None:
    now = int(time.time() * 1000)
    record = make_record(1, started_ms=now)
    assert store.write([record]) == 1
    got = store.get(record["trace_id"])
    assert got["input_tokens"] == 11 and got["output_tokens"] == 20
    assert got["reasoning_tokens"] == 5 and got["cached_tokens"] == 4
    assert got["prompt"] == [{"role": "user", "content": "hello 1"}]
    assert got["response"] == "answer 1"
    assert [s["name"] for s in got["spans"]] == ["request", "generation"]
    assert got["spans"][1]["parent_id"] == got["spans"][0]["span_id"]
    assert got["latency_s"] == pytest.approx(0.5)
    assert got["scores"] == []
    # Writing the same trace again (a retried batch) is a no-op, not an error.
    store.write([record])
    assert store.count() == 1
    with pytest.raises(NotFound):
        store.get("0" * 32)


def test_filters_search_and_paging(store: TraceStore) -> None:
    now = int(time.time() * 1000)
    records = [make_record(i, started_ms=now - i * 1000, model="a" if i % 2 else "b", key=f"k{i % 3}",
                           status="error" if i % 5 == 0 else "ok", prompt="needle" if i == 7 else "hay")
               for i in range(20)]
    store.write(records)
    assert store.count() == 20
    assert store.count(TraceFilter(model="a")) == 10
    assert store.count(TraceFilter(status="error")) == 4
    assert store.count(TraceFilter(key_id="k1", model="a")) == len([i for i in range(20) if i % 3 == 1 and i % 2])
    assert store.count(TraceFilter(since_ms=now - 4500)) == 5
    found = store.list(TraceFilter(q="NEEDLE"))
    assert [r["preview"] for r in found] == ["needle 7"]
    assert store.list(TraceFilter(q=records[3]["trace_id"]))[0]["trace_id"] == records[3]["trace_id"]
    assert store.count(TraceFilter(q="100%_")) == 0  # LIKE wildcards in the query are literal
    page1 = store.list(limit=8)
    page2 = store.list(limit=8, offset=8)
    ids = [r["trace_id"] for r in page1 + page2]
    assert len(set(ids)) == 16
    assert [r["started_ms"] for r in page1] == sorted((r["started_ms"] for r in page1), reverse=True)
    assert "prompt" not in page1[0] and "spans" not in page1[0]
    with pytest.raises(InvalidRequest):
        store.list(limit=0)
    exported = list(store.iter_all(batch=3))
    assert len(exported) == 20 and exported[0]["started_ms"] <= exported[-1]["started_ms"]
    assert store.distinct("model") == ["a", "b"]


def test_stats_buckets_percentiles_and_cost_breakdowns(store: TraceStore) -> None:
    minute = 60_000
    base = (int(time.time() * 1000) // minute - 10) * minute
    # Minute 0: latencies 0.1..1.0 s; minute 1: ten 2-second requests, two of them errors.
    records = [make_record(i, started_ms=base + i, latency_s=0.1 * (i + 1), key="k1", cost=0.5) for i in range(10)]
    records += [make_record(10 + i, started_ms=base + minute + i, latency_s=2.0, key="k2",
                            status="error" if i < 2 else "ok", cost=0.25) for i in range(10)]
    store.write(records)
    stats = store.stats(TraceFilter(since_ms=base), bucket_ms=minute)
    s0, s1 = stats["series"]
    assert s0["t"] == base / 1000 and s1["t"] == (base + minute) / 1000
    assert (s0["requests"], s0["errors"], s1["requests"], s1["errors"]) == (10, 0, 10, 2)
    assert s0["latency_p50_s"] == pytest.approx(0.5, rel=0.06)
    assert s0["latency_p99_s"] == pytest.approx(1.0, rel=0.06)
    assert s1["latency_p90_s"] == pytest.approx(2.0, rel=0.06)
    assert s0["output_tokens"] == 200
    assert {k["key_id"]: round(k["cost_tokens_usd"], 6) for k in stats["by_key"]} == {"k1": 5.0, "k2": 2.5}
    assert sum(d["requests"] for d in stats["by_day"]) == 20
    assert stats["totals"]["requests"] == 20 and stats["totals"]["errors"] == 2


def test_prune_by_age_and_rows_takes_scores_along(store: TraceStore) -> None:
    now = int(time.time() * 1000)
    old = [make_record(i, started_ms=now - 40 * 86_400_000 + i) for i in range(5)]
    new = [make_record(10 + i, started_ms=now - i) for i in range(10)]
    store.write(old + new)
    store.add_score(old[0]["trace_id"], name="f", kind="thumbs", value=1.0, label="up", comment=None)
    store.add_score(new[0]["trace_id"], name="f", kind="thumbs", value=0.0, label="down", comment="meh")
    assert store.prune(max_age_days=30, max_rows=None, now_ms=now) == 5
    assert store.count() == 10 and store.scores(old[0]["trace_id"]) == []
    assert store.prune(max_age_days=None, max_rows=4) == 6
    kept = {r["trace_id"] for r in store.list()}
    assert kept == {r["trace_id"] for r in new[:4]}  # the newest four survive
    assert store.scores(new[0]["trace_id"])[0]["comment"] == "meh"


def test_prune_is_exact_when_timestamps_tie(store: TraceStore) -> None:
    now = int(time.time() * 1000)
    store.write([make_record(i, started_ms=now) for i in range(6)])
    store.prune(max_age_days=None, max_rows=4)
    assert store.count() == 4


def test_reopening_keeps_data(store_url: str) -> None:
    first = TraceStore(store_url)
    first.write([make_record(1, started_ms=int(time.time() * 1000))])
    first.close()
    again = TraceStore(store_url)  # schema creation is idempotent
    assert again.count() == 1
    again.close()


def test_latency_buckets_are_within_five_percent() -> None:
    for seconds in (0.002, 0.05, 0.3, 1.0, 7.5, 120.0):
        assert bucket_value_s(latency_bucket(seconds)) == pytest.approx(seconds, rel=0.05)
    hist = [(latency_bucket(v / 100), 1) for v in range(1, 101)]
    p50, p99 = percentiles(hist, (0.5, 0.99))
    assert p50 == pytest.approx(0.5, rel=0.06) and p99 == pytest.approx(0.99, rel=0.06)
