"""What grammar-constrained tool calls cost and buy: the engine with and without the turn grammar, side by side.

On gpt-oss-nano (the shipped model), the held-out evaluation's first-turn tool conversations are decoded
greedily twice in one run, free and under ossgate/structured.py's grammar. It reports decode throughput of
both (their ratio is the grammar's cost), the grammar's own time per token (mask + advance, replayed on the
constrained outputs), the one-off tokenizer build, and how often each run named a declared tool.

    python bench/structured.py --n 100 --threads 2     # writes bench/results/structured.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from ossgate.engine import constraint
from ossgate.engine.core import EngineCore
from ossgate.engine.generate import generate_batch
from ossgate.engine.request import Request
from ossgate.engine.sampling import SamplingParams
from ossgate.harmony import MalformedHarmony, parse_completion, stop_token_ids
from ossgate.model.checkpoint import load_model
from ossgate.nano import evaluate, model_path
from ossgate.structured import turn_grammar

OUT = Path(__file__).parent / "results" / "structured.md"


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def declared_share(cases, outputs) -> float:
    """Share of conversations whose first call names a declared tool (of those that call one)."""
    named = []
    for case, out in zip(cases, outputs, strict=True):
        try:
            calls = parse_completion(out).tool_calls
        except MalformedHarmony:
            continue
        if calls:
            named.append(calls[0].name in {t.name for t in case.sample.tools})
    return sum(named) / max(1, len(named))


def decode(model, prompts: list[list[int]], params: list[SamplingParams]) -> tuple[list[list[int]], int]:
    """generate_batch's loop, counting engine steps: a long straggler decodes alone, at batch size 1."""
    core = EngineCore(model)
    requests = [Request(f"r{i}", p, q) for i, (p, q) in enumerate(zip(prompts, params, strict=True))]
    for r in requests:
        core.add(r)
    steps = 0
    while core.has_work:
        core.step()
        steps += 1
    return [r.output for r in requests], steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="tool conversations (seen declarations)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    constraint.tokenizer()
    build_s = time.perf_counter() - started

    cases = [c for c in evaluate.build_cases(args.n) if c.sample.kind == "tool" and c.stage == "first"][: args.n]
    model = load_model(model_path(), dtype=torch.float32, show_progress=False)
    prompts = [c.prompt for c in cases]
    generate_batch(model, prompts[:2], SamplingParams(max_tokens=4, temperature=0.0))  # kernels, first pass

    rows = {}
    for label, structured in (("free", False), ("grammar", True)):
        params = [
            SamplingParams(
                max_tokens=400,
                temperature=0.0,
                stop_token_ids=stop_token_ids(),
                grammar=turn_grammar(c.sample.tools) if structured else None,
            )
            for c in cases
        ]
        started = time.perf_counter()
        outputs, steps = decode(model, prompts, params)
        seconds = time.perf_counter() - started
        tokens = sum(len(o) for o in outputs)
        rows[label] = (tokens, seconds, steps, declared_share(cases, outputs), outputs)

    # the grammar's own work, replayed on the constrained outputs: everything but the model
    per_token, replayed = 0.0, 0
    logits = torch.zeros(constraint.VOCAB_SIZE)
    for case, out in zip(cases, rows["grammar"][-1], strict=True):
        c = constraint.Constraint(turn_grammar(case.sample.tools))
        started = time.perf_counter()
        for t in out:
            c.mask(logits)
            c.advance(t)
        per_token += time.perf_counter() - started
        replayed += len(out)

    free_tps = rows["free"][0] / rows["free"][1]
    grammar_tps = rows["grammar"][0] / rows["grammar"][1]
    step_ratio = (rows["grammar"][1] / rows["grammar"][2]) / (rows["free"][1] / rows["free"][2])
    lines = [
        "# Grammar-constrained tool calls: cost and effect",
        "",
        f"Machine: {cpu()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}. Command: `python bench/structured.py --n {args.n} --threads {args.threads}`.",
        f"Model: the shipped gpt-oss-nano (float32), {len(cases)} held-out first-turn tool conversations, greedy,"
        " continuous batching.",
        "",
        "| run | tokens | seconds | tokens/s | steps | ms a step | longest output | calls to a declared tool |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, (tokens, seconds, steps, share, outputs) in rows.items():
        lines.append(
            f"| {label} | {tokens} | {seconds:.1f} | {tokens / seconds:.1f} | {steps} | {seconds / steps * 1e3:.1f} "
            f"| {max(len(o) for o in outputs)} | {share:.1%} |"
        )
    lines += [
        "",
        f"- throughput under the grammar / free: **{grammar_tps / free_tps:.2f}x**; time a step, grammar / free: "
        f"{step_ratio:.2f}x (an output that runs long decodes alone, in steps of batch 1 or 2)",
        f"- grammar work per token (mask + advance, replayed): {per_token / replayed * 1e3:.3f} ms",
        f"- o200k_harmony tokenizer for llguidance, built once per engine process: {build_s:.1f} s",
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
