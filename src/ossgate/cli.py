"""The `ossgate` command line: one typer app; features add their sub-apps here.

User mistakes surface as OssgateError: one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ossgate.engine import bench as engine_bench
from ossgate.errors import OssgateError
from ossgate.nano import cli as nano_cli
from ossgate.observe import cli as observe_cli
from ossgate.rag import cli as rag_cli
from ossgate.server.cli import keys_app, serve_command

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Self-hosted platform for gpt-oss models.")
checkpoint_app = typer.Typer(no_args_is_help=True, help="Create, convert and inspect gpt-oss checkpoints.")
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(observe_cli.app, name="traces")
app.add_typer(rag_cli.app)  # ingest, docs, search, ask
app.add_typer(engine_bench.app, name="bench")
app.command("serve")(serve_command)
app.add_typer(keys_app, name="keys")
app.add_typer(nano_cli.app, name="nano")

DTYPES = {"bfloat16": "bfloat16", "float32": "float32"}


def default_model_path() -> Path:
    """The embedded gpt-oss-nano, materialised on first use."""
    from ossgate.nano import model_path

    return model_path()


@app.command()
def generate(
    prompt: Annotated[str, typer.Option(help="The user message.")],
    model: Annotated[
        Path | None, typer.Option(help="Checkpoint directory (default: the embedded gpt-oss-nano).")
    ] = None,
    system: Annotated[
        str | None, typer.Option(help="Instructions (rendered as the harmony developer message).")
    ] = None,
    reasoning_effort: Annotated[str, typer.Option(help="low | medium | high")] = "medium",
    max_tokens: Annotated[int, typer.Option(min=1)] = 512,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 = greedy")] = 0.0,
    seed: Annotated[int | None, typer.Option()] = None,
    dtype: Annotated[str, typer.Option(help="bfloat16 | float32")] = "bfloat16",
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Generate one answer: the reasoning (analysis channel) and the final answer, printed separately."""
    import torch

    from ossgate import harmony
    from ossgate.engine.generate import chat
    from ossgate.engine.sampling import SamplingParams
    from ossgate.model.checkpoint import load_model

    if dtype not in DTYPES:
        raise OssgateError(f"--dtype must be bfloat16 or float32, got {dtype!r}")
    messages = ([harmony.ChatMessage("system", system)] if system else []) + [harmony.ChatMessage("user", prompt)]
    harmony.render_prompt(messages, effort=reasoning_effort)  # a bad effort fails before the model loads
    net = load_model(
        model or default_model_path(), dtype=getattr(torch, dtype), device=device, show_progress=not as_json
    )
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    channel = None

    def show(delta: harmony.Delta) -> None:
        nonlocal channel
        if delta.channel != channel:
            channel = delta.channel
            typer.secho(f"\n[{channel}]", fg="cyan" if channel == "analysis" else "green")
        typer.echo(delta.text, nl=False)

    result = chat(net, messages, params, effort=reasoning_effort, on_delta=None if as_json else show)
    completion, finish_reason = result.completion, result.finish_reason
    if as_json:
        print(
            json.dumps(
                {
                    "prompt_token_ids": result.prompt_ids,
                    "completion_token_ids": result.completion_ids,
                    "analysis": completion.analysis,
                    "final": completion.final,
                    "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in completion.tool_calls],
                    "finish_reason": finish_reason,
                }
            )
        )
    else:
        if finish_reason == "malformed_harmony":
            typer.secho("[raw output, not valid harmony]", fg="yellow")
            typer.echo(completion.final)
        typer.echo(f"\n\n(finish_reason: {finish_reason}, {len(result.completion_ids)} tokens)")


@checkpoint_app.command("new")
def checkpoint_new(
    out: Annotated[Path, typer.Argument(help="Directory to write.")],
    shape: Annotated[str, typer.Option(help="tiny | 20b | 120b")] = "tiny",
    layers: Annotated[int | None, typer.Option(min=1, help="Override the number of layers.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    dense: Annotated[bool, typer.Option(help="bf16 experts (as merged fine-tunes publish) instead of MXFP4.")] = False,
) -> None:
    """Write a random checkpoint in the exact Hugging Face gpt-oss layout (MXFP4 experts), with tokenizer.json."""
    from ossgate.model.config import shape_config
    from ossgate.model.writer import new_checkpoint

    config = shape_config(shape, layers, quantized=not dense)
    new_checkpoint(config, out, seed=seed)
    typer.echo(f"wrote {shape} checkpoint ({config.num_hidden_layers} layers, seed {seed}) to {out}")


@checkpoint_app.command("to-original")
def checkpoint_to_original(src: Path, out: Path) -> None:
    """Convert a Hugging Face-layout checkpoint to openai/gpt-oss's original layout (for its reference code)."""
    from ossgate.model.writer import to_original

    to_original(src, out)
    typer.echo(f"wrote original layout to {out}")


@checkpoint_app.command("quantize")
def checkpoint_quantize(src: Path, out: Path) -> None:
    """Re-pack a checkpoint with bf16 experts (a merged fine-tune) as MXFP4."""
    from ossgate.model.writer import quantize_checkpoint

    quantize_checkpoint(src, out)
    typer.echo(f"wrote MXFP4 checkpoint to {out}")


@checkpoint_app.command("inspect")
def checkpoint_inspect(path: Path) -> None:
    """Validate a checkpoint (every tensor's name, shape, dtype; files whole) and print its shape."""
    from ossgate.model.checkpoint import locate

    files = locate(path)
    c = files.config
    typer.echo(
        f"{path}: {files.layout} layout, {c.num_hidden_layers} layers, "
        f"{c.num_local_experts} experts (top-{c.num_experts_per_tok}), "
        f"hidden {c.hidden_size}, vocab {c.vocab_size}, experts {'MXFP4' if c.quantized else 'dense'}, "
        f"{len(set(files.where.values()))} file(s) — OK"
    )


def main() -> None:
    """Console entry point: OssgateError -> one line on stderr, exit 1."""
    try:
        app()
    except OssgateError as e:
        print(f"error: {e.message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
