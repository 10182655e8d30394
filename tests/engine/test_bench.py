"""`ossgate bench` end to end: the real CLI, ossgate and transformers in subprocesses on one checkpoint."""

import re
import subprocess
import sys


def test_bench_reports_every_metric_side_by_side(tiny_checkpoint):
    cmd = [sys.executable, "-m", "ossgate", "bench", "run", str(tiny_checkpoint), "--peers", "transformers",
           "--prompt", "24", "--decode", "6", "--batches", "3", "--kv-tokens", "300", "--threads", "1"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4:
            rows[cells[0]] = cells[1:]
    assert rows["metric"] == ["ossgate", "transformers", "ossgate/transformers"]
    for label in ("prefill tok/s", "decode b1 tok/s", "aggregate b3 tok/s", "b3, all decoding tok/s", "peak RSS GB"):
        ours, theirs, ratio = rows[label]
        assert float(ours) > 0 and float(theirs) > 0, label
        assert abs(float(ratio) - float(ours) / float(theirs)) <= 0.02 * float(ratio) + 0.01, label
    assert re.search(r"Memory-bandwidth limit at batch 1: [\d.]+ GB read per token", out.stdout)
    bad = subprocess.run([sys.executable, "-m", "ossgate", "bench", "run", str(tiny_checkpoint / "missing")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_rounds_keep_each_metric_at_its_best():
    from ossgate.engine.bench import best

    rounds = [
        {"decode_b1_tok_s": 3.0, "ttft_s": 2.0, "peak_rss_gb": 4.0, "load_before": 0.5, "native_kernels": True},
        {"decode_b1_tok_s": 4.0, "ttft_s": 2.5, "peak_rss_gb": 4.2, "load_before": 1.5, "native_kernels": True},
        {"error": "out of memory"},
    ]
    got = best(rounds)
    assert got["decode_b1_tok_s"] == 4.0 and got["ttft_s"] == 2.0  # the fastest round of each
    assert got["peak_rss_gb"] == 4.2  # memory: the largest seen
    assert got["load_before"] == 0.5 and got["native_kernels"] is True and got["rounds"] == 3
    assert best([{"error": "x"}]) == {"error": "x"}
