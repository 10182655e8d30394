"""`ossgate nano train|eval|data`: reproduce gpt-oss-nano's training run, evaluate it, inspect its data."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ossgate.cli_errors import run as _run
from ossgate.errors import InvalidRequest

app = typer.Typer(help="gpt-oss-nano: train, evaluate, dump training data.", no_args_is_help=True)
console = Console()
REPO_SHIP_DIR = Path("src/ossgate/models/gpt-oss-nano")


@app.command()
def train(
    seed: Annotated[int, typer.Option(help="Seed of the data, initialisation and batch order.")] = 0,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (default: the full run's).")] = None,
    samples: Annotated[
        int | None, typer.Option(help="Distinct training conversations (default: the full run's).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (checkpoint, history, loss curve); default under the data dir.")
    ] = None,
    ship: Annotated[
        Path | None, typer.Option(help=f"Also export the compact shipped model here (the repo's is {REPO_SHIP_DIR}).")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for training.")] = 1,
    tie_embeddings: Annotated[
        bool, typer.Option(help="Tie the unembedding to the embedding (a new run only; a resumed run keeps its own).")
    ] = False,
    heads: Annotated[int, typer.Option(min=1, help="Query heads (a new run only).")] = 4,
    kv_heads: Annotated[int, typer.Option(min=1, help="Key/value heads; must divide --heads (a new run only).")] = 2,
    lr: Annotated[float | None, typer.Option(min=0, help="Peak learning rate (default: the full run's).")] = None,
    factored_numbers: Annotated[
        bool,
        typer.Option(help="Number tokens' output rows as sums of (length, place-digit) vectors (a new run only)."),
    ] = False,
    init: Annotated[
        Path | None, typer.Option(help="Start from this shipped gpt-oss-nano directory instead of random weights.")
    ] = None,
    name_weight: Annotated[float, typer.Option(help="Loss weight of the tool name a call's analysis copies.")] = 1.0,
    number_weight: Annotated[
        float, typer.Option(help="Loss weight of the numbers an answer copies from the conversation.")
    ] = 1.0,
) -> None:
    """Train gpt-oss-nano from scratch (resumes from the run directory's checkpoint if there is one)."""

    def go() -> None:
        from ossgate.nano.artifact import export_compact
        from ossgate.nano.data import GENERATOR_VERSION
        from ossgate.nano.train import RunConfig
        from ossgate.nano.train import train as run_training
        from ossgate.tune.plot import save_loss_curve
        from ossgate.vocab import data_dir

        if heads % kv_heads:
            raise InvalidRequest("--kv-heads must divide --heads", param="kv_heads")
        if not name_weight > 0:
            raise InvalidRequest("--name-weight must be above 0", param="name_weight")
        if not number_weight > 0:
            raise InvalidRequest("--number-weight must be above 0", param="number_weight")
        run = RunConfig(
            seed=seed,
            tie_embeddings=tie_embeddings,
            attention_heads=heads,
            kv_heads=kv_heads,
            factored_numbers=factored_numbers,
            name_weight=name_weight,
            number_weight=number_weight,
        )
        if steps is not None:
            if steps < 1:
                raise InvalidRequest("--steps must be at least 1", param="steps")
            run.steps, run.warmup = steps, min(run.warmup, max(1, steps // 10))
        if samples is not None:
            run.samples = samples
        if lr is not None:
            run.lr = lr
        if init is not None:
            from ossgate.nano.artifact import COMPACT_FILE

            if not (init / COMPACT_FILE).is_file():
                raise InvalidRequest(f"--init {init}: no {COMPACT_FILE} there", param="init")
            run.init = str(init)
        out_dir = out or data_dir() / "nano-train" / f"seed{seed}"
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        started = time.monotonic()
        model, vocab, history = run_training(run, out_dir, threads=threads)
        curve = save_loss_curve(history, out_dir / "loss.png", title=f"gpt-oss-nano training (seed {seed})")
        first, last = history[0]["loss"], sum(r["loss"] for r in history[-10:]) / len(history[-10:])
        console.print(
            f"{len(history)} steps, loss {first:.3f} -> {last:.3f}, {time.monotonic() - started:.0f}s; curve: {curve}"
        )
        if ship:
            extra = {
                "model": "gpt-oss-nano",
                "generator_version": GENERATOR_VERSION,
                "run": run.__dict__,
                "steps": len(history),
                "final_loss": last,
                "train_seconds": history[-1]["seconds"],
                "used_token_ids": len(vocab),
            }
            path = export_compact(model, vocab, ship, extra)
            console.print(f"shipped model written to {path}")

    _run(go)


@app.command("eval")
def evaluate(
    model: Annotated[
        Path | None,
        typer.Option(help="Checkpoint directory, or what `--ship` wrote (default: the shipped gpt-oss-nano)."),
    ] = None,
    n: Annotated[int, typer.Option(help="Conversations per skill.")] = 100,
    seed: Annotated[int | None, typer.Option(help="Evaluation seed (default: the held-out one).")] = None,
    dense_run: Annotated[
        Path | None, typer.Option(help="Evaluate a training run's dense (unquantised) checkpoint instead.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report (with failures) here.")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads.")] = 1,
    structured: Annotated[
        bool, typer.Option(help="Decode under the tool-call grammar, as `ossgate serve` does (default: model alone).")
    ] = False,
) -> None:
    """Held-out evaluation: prints the table, exits 1 when a threshold is missed."""

    def go() -> None:
        import torch

        from ossgate.model.checkpoint import load_model
        from ossgate.nano import evaluate as ev
        from ossgate.nano.artifact import expand_model, model_path
        from ossgate.nano.train import load_trained

        torch.set_num_threads(threads)
        if dense_run:
            compact, vocab, _ = load_trained(dense_run)
            net, source = expand_model(compact, vocab), f"{dense_run} (dense experts)"
        else:
            path = model_path(model)
            net, source = load_model(path, dtype=torch.float32, show_progress=False), str(path)
        started = time.monotonic()
        report = ev.run(net, n, seed if seed is not None else ev.EVAL_SEED, structured=structured)
        decoding = "under the tool-call grammar" if structured else "unconstrained"
        console.print(f"model: {source}; {n} conversations per skill, {decoding}; {time.monotonic() - started:.0f}s")
        console.print(ev.table(report), markup=False, highlight=False)
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(report.to_json())
        if not report.ok:
            raise typer.Exit(1)

    _run(go)


@app.command()
def data(
    n: Annotated[int, typer.Option(help="How many conversations.")] = 5,
    seed: Annotated[int, typer.Option(help="Generator seed (training uses 0).")] = 0,
    kind: Annotated[
        str | None, typer.Option(help="arithmetic | formatted | tool | tool_list | grounded | greeting | refusal")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line instead of rendered harmony.")
    ] = False,
) -> None:
    """Print training conversations as the model sees them (assistant targets included)."""

    def go() -> None:
        from dataclasses import asdict

        from ossgate.harmony import decode
        from ossgate.nano import data as gen

        kinds = [k for k, _ in gen.MIX]
        if kind is not None and kind not in kinds:
            raise InvalidRequest(f"--kind must be one of {', '.join(kinds)}", param="kind")
        rng = random.Random(seed)
        for _ in range(n):
            s = gen.sample(rng, kind)
            if as_json:
                print(
                    json.dumps(
                        {
                            "kind": s.kind,
                            "lang": s.lang,
                            "effort": s.effort,
                            "messages": [asdict(m) for m in s.messages],
                            "tools": [asdict(t) for t in s.tools],
                            "response_format": asdict(s.response_format) if s.response_format else None,
                            "meta": s.meta,
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                console.rule(f"{s.kind} · {s.lang} · {s.effort}")
                print(decode(gen.encode(s)[0]))

    _run(go)
