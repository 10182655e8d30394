"""`ossgate traces …` against a real SQLite store filled by a real Tracer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ossgate.observe import Metrics, ObserveSettings, Tracer
from ossgate.observe.cli import app

runner = CliRunner()


@pytest.fixture
def filled(tmp_path: Path) -> tuple[str, list[str]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    tracer = Tracer(ObserveSettings(store_url=url, capture="full",
                                    prices={"*": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}}),
                    metrics=Metrics())
    ids = []
    for i in range(5):
        trace = tracer.start(model="gpt-oss-20b", key_id=f"k{i % 2}", tenant_id="acme")
        with trace.span("generation"):
            trace.first_token()
        trace.record(input_tokens=10, output_tokens=i + 2)
        trace.capture(prompt=[{"role": "user", "content": f"question {i} zebra" if i == 3 else f"question {i}"}],
                      response=f"answer {i}")
        if i == 4:
            trace.fail(RuntimeError("engine died"))
        tracer.finish(trace)
        ids.append(trace.trace_id)
        time.sleep(0.003)  # distinct start times, so newest-first order is defined
    tracer.close()
    return url, ids


def test_list_show_export_stats(filled, tmp_path: Path) -> None:
    url, ids = filled
    r = runner.invoke(app, ["list", "--store", url, "--json"])
    assert r.exit_code == 0, r.output
    assert [row["trace_id"] for row in json.loads(r.stdout)] == ids[::-1]
    r = runner.invoke(app, ["list", "--store", url, "-q", "zebra", "--json"])
    assert [row["trace_id"] for row in json.loads(r.stdout)] == [ids[3]]
    r = runner.invoke(app, ["list", "--store", url, "--status", "error"])
    assert r.exit_code == 0 and ids[4] in r.stdout and ids[0] not in r.stdout

    r = runner.invoke(app, ["show", ids[3], "--store", url])
    assert r.exit_code == 0, r.output
    assert "generation" in r.stdout and "question 3 zebra" in r.stdout and "answer 3" in r.stdout

    out = tmp_path / "traces.jsonl"
    r = runner.invoke(app, ["export", "--store", url, "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["trace_id"] for line in lines] == ids
    assert lines[0]["spans"][1]["name"] == "generation" and lines[0]["scores"] == []
    r = runner.invoke(app, ["export", "--store", url, "--key", "k1"])
    assert [json.loads(line)["trace_id"] for line in r.stdout.splitlines()] == [ids[1], ids[3]]

    r = runner.invoke(app, ["stats", "--store", url, "--by", "key", "--json"])
    by_key = {row["key_id"]: row for row in json.loads(r.stdout)}
    assert by_key["k0"]["requests"] == 3 and by_key["k1"]["requests"] == 2
    assert by_key["k1"]["cost_tokens_usd"] == pytest.approx((10 + 3 + 10 + 5) / 1e6)

    r = runner.invoke(app, ["prune", "--store", url, "--rows", "2"])
    assert r.exit_code == 0 and "removed 3" in r.stdout


def test_errors_are_one_line_without_traceback(filled) -> None:
    url, _ = filled
    r = runner.invoke(app, ["show", "0" * 32, "--store", url])
    assert r.exit_code == 1
    assert r.stderr.startswith("error: no trace with id") and "Traceback" not in r.output
    r = runner.invoke(app, ["list", "--store", url, "--since", "last tuesday"])
    assert r.exit_code == 1 and "is not a time" in r.stderr
    r = runner.invoke(app, ["list", "--store", "mysql://nope"])
    assert r.exit_code == 1 and "sqlite:///" in r.stderr
