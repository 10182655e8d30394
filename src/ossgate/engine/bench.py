"""`ossgate bench`: the native engine against its peers on the same checkpoint, in one run.

Each engine runs in its own subprocess, one after the other (so peak RSS is its own, and two large
models never share the RAM), on the same random prompts, greedy, after one warm-up request with a
prompt of the measured length (so no engine's first-call kernel selection and buffer growth land in
its TTFT; a server pays those once). Measured per engine:

- prefill tok/s and time to first token on a `--prompt`-token prompt;
- decode tok/s at batch 1 (a 16-token prompt, `--decode` tokens);
- aggregate decode tok/s with B concurrent sequences: ossgate gets B requests arriving one a step
  (continuous batching); peers without a scheduler run a static batch of B; both figures include the
  prefills and the steps with fewer than B sequences;
- "all decoding": tok/s over the steps in which all B sequences decode (no prefill, none finished),
  the figure the memory-bandwidth argument for batching is about;
- peak RSS (ru_maxrss of the subprocess; for ossgate after also growing one sequence's KV cache to
  `--kv-tokens` positions, so the figure includes a real cache).

Peers: Hugging Face transformers' GptOssForCausalLM (dequantises experts to bf16 on CPU), the
reference `gpt_oss.torch.model.Transformer` (original layout, no KV cache: each token recomputes
the whole sequence, and its MoE gathers dense expert weights per token, so it gets short prompts),
and llama.cpp through llama-cpp-python when installed and given a GGUF file.

Also reported: the memory-bandwidth limit of batch-1 decode = this machine's measured read
bandwidth / bytes read per decoded token.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

app = typer.Typer(help="Benchmark the native engine against transformers, the gpt-oss reference and llama.cpp.")

SHORT_PROMPT = 16  # prompt length for the decode measurements
DEFAULT_PEERS = "transformers,reference"
REFERENCE_MAX_PROMPT = 16  # the reference's MoE materialises (tokens x 4 x 2I x D) bf16 weights


# ---- shared measurements ---------------------------------------------------------------------------


def read_bandwidth(gib: float = 1.0, reps: int = 5) -> float:
    """Best of `reps` sums over a `gib` GiB fp32 tensor (all threads): bytes/s this machine reads."""
    a = torch.ones(int(gib * 1024**3) // 4, dtype=torch.float32)
    a.sum()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.numel() * 4 / best


def bytes_per_token(config) -> int:
    """Weight bytes one batch-1 decode step reads: routed experts (MXFP4), attention and router (bf16), unembedding."""
    D, I, H, G, d = (config.hidden_size, config.intermediate_size, config.num_attention_heads,
                     config.num_key_value_heads, config.head_dim)  # fmt: skip
    k, E = config.num_experts_per_tok, config.num_local_experts
    experts = k * (2 * I * D + D * I) * 17 // 32 + k * (2 * I + D) * 2  # 4 bits + 1 scale byte per 32, bf16 biases
    attention = ((H + 2 * G) * d * D + D * H * d) * 2 + ((H + 2 * G) * d + D + H) * 2
    router = (E * D + E) * 2
    return config.num_hidden_layers * (experts + attention + router) + config.vocab_size * D * 2 + D * 2


def prompts(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, min(vocab, 199_998), (n, length), generator=g).tolist()


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


# ---- engines (each runs inside a worker subprocess) ---------------------------------------------------


def run_ossgate(ckpt: Path, prompt_len: int, decode: int, batches: list[int], kv_tokens: int) -> dict:
    from ossgate.engine.core import EngineConfig, EngineCore
    from ossgate.engine.generate import stream
    from ossgate.engine.request import Request
    from ossgate.engine.sampling import SamplingParams
    from ossgate.model.checkpoint import load_model
    from ossgate.model.kernels import mxfp4_cpu

    model = load_model(ckpt, show_progress=False)
    V = model.config.vocab_size
    res: dict = {"native_kernels": mxfp4_cpu.available()}
    core = EngineCore(model, EngineConfig(max_running=1, max_tokens_per_step=prompt_len, prefix_cache_bytes=0))
    list(stream(model, prompts(1, prompt_len, V, 9)[0], SamplingParams(max_tokens=2, temperature=0), core))  # warm-up
    t0 = time.perf_counter()
    first = next(stream(model, prompts(1, prompt_len, V, 1)[0], SamplingParams(max_tokens=1, temperature=0), core))
    res["ttft_s"] = first.time - t0
    res["prefill_tok_s"] = prompt_len / res["ttft_s"]

    params = SamplingParams(max_tokens=decode + 1, temperature=0)
    times = [e.time for e in stream(model, prompts(1, SHORT_PROMPT, V, 2)[0], params)]
    res["decode_b1_tok_s"] = decode / (times[-1] - times[0])

    for B in batches:
        core = EngineCore(model, EngineConfig(max_running=B, prefix_cache_bytes=0))
        params = SamplingParams(max_tokens=decode, temperature=0)
        pending = [Request(f"b{B}-{i}", p, params) for i, p in enumerate(prompts(B, SHORT_PROMPT, V, 3))]
        t0, produced = time.perf_counter(), 0
        while pending or core.has_work:
            if pending:  # staggered arrivals: one new request a step
                core.add(pending.pop(0))
            produced += len(core.step())
        res[f"decode_b{B}_tok_s"] = produced / (time.perf_counter() - t0)
        res[f"decode_b{B}_steady_tok_s"] = steady_decode(core, B, decode, V)

    if kv_tokens:  # hold a real cache of kv_tokens positions while the RSS is read
        cache = core.make_cache(kv_tokens)
        for layer in range(model.config.num_hidden_layers):
            if cache.ring_pos[layer] is None:
                cache._grow(layer, kv_tokens)
                cache.k[layer].fill_(1), cache.v[layer].fill_(1)
        res["kv_cache_gb"] = cache.nbytes() / 1e9
    return res


def steady_decode(core, B: int, decode: int, V: int) -> float:
    """Aggregate tok/s of decode steps in which all B sequences run (their prefills done, none finished)."""
    from ossgate.engine.request import Request
    from ossgate.engine.sampling import SamplingParams

    params = SamplingParams(max_tokens=decode, temperature=0)
    for i, p in enumerate(prompts(B, SHORT_PROMPT, V, 4)):
        core.add(Request(f"steady{B}-{i}", p, params))
    started: set[str] = set()
    while len(started) < B:
        started |= {e.request_id for e in core.step()}
    t0, produced = time.perf_counter(), 0
    for _ in range(max(decode - 2, 1)):  # the last step finishes every sequence
        produced += len(core.step())
    rate = produced / (time.perf_counter() - t0)
    while core.has_work:
        core.step()
    return rate


def run_transformers(ckpt: Path, prompt_len: int, decode: int, batches: list[int], kv_tokens: int) -> dict:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16).eval()
    V = model.config.vocab_size

    @torch.inference_mode()
    def greedy(ids: torch.Tensor, steps: int) -> list[float]:
        """Prefill ids (B, L), then `steps` greedy tokens; returns the time of each token."""
        out = model(ids, use_cache=True)
        times = [time.perf_counter()]
        for _ in range(steps):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            out = model(nxt, past_key_values=out.past_key_values, use_cache=True)
            times.append(time.perf_counter())
        return times

    greedy(torch.tensor(prompts(1, prompt_len, V, 9)), 1)  # warm-up
    t0 = time.perf_counter()
    times = greedy(torch.tensor(prompts(1, prompt_len, V, 1)), 0)
    res = {"ttft_s": times[0] - t0, "prefill_tok_s": prompt_len / (times[0] - t0)}
    times = greedy(torch.tensor(prompts(1, SHORT_PROMPT, V, 2)), decode)
    res["decode_b1_tok_s"] = decode / (times[-1] - times[0])
    for B in batches:  # static batch: all prompts together, then B tokens a step
        t0 = time.perf_counter()
        times = greedy(torch.tensor(prompts(B, SHORT_PROMPT, V, 3)), decode - 1)
        res[f"decode_b{B}_tok_s"] = B * decode / (times[-1] - t0)
        res[f"decode_b{B}_steady_tok_s"] = B * (decode - 1) / (times[-1] - times[0])
    return res


def run_reference(ckpt: Path, prompt_len: int, decode: int, batches: list[int], kv_tokens: int) -> dict:
    from gpt_oss.torch.model import Transformer

    model = Transformer.from_checkpoint(str(ckpt), device="cpu")
    V = model.embedding.weight.shape[0]
    prompt_len = min(prompt_len, REFERENCE_MAX_PROMPT) if model.embedding.weight.shape[1] > 1024 else prompt_len

    @torch.inference_mode()
    def greedy(tokens: list[int], steps: int) -> list[float]:
        tokens, times = list(tokens), []
        for _ in range(steps + 1):  # no KV cache: every token runs the whole sequence again
            tokens.append(int(model(torch.tensor(tokens))[-1].argmax()))
            times.append(time.perf_counter())
        return times

    greedy(prompts(1, prompt_len, V, 9)[0], 0)  # warm-up
    t0 = time.perf_counter()
    times = greedy(prompts(1, prompt_len, V, 1)[0], 0)
    res = {"ttft_s": times[0] - t0, "prefill_tok_s": prompt_len / (times[0] - t0), "prompt_len": prompt_len}
    steps = min(decode, 8)
    times = greedy(prompts(1, SHORT_PROMPT, V, 2)[0], steps)
    res["decode_b1_tok_s"] = steps / (times[-1] - times[0])
    return res  # batched decode: the reference takes one sequence


def run_llama_cpp(gguf: Path, prompt_len: int, decode: int, batches: list[int], kv_tokens: int) -> dict:
    import llama_cpp
    import numpy as np

    ctx = max(prompt_len, SHORT_PROMPT + decode) + 8
    # use_mmap=False: llama.cpp repacks the experts into its own buffer, and mapped file pages would be
    # counted in its RSS a second time
    llm = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=ctx, n_threads=torch.get_num_threads(), n_batch=prompt_len, use_mmap=False,
        verbose=False,
    )  # fmt: skip
    V = llm.n_vocab()

    def last_argmax() -> int:  # eval() fills llm.scores only with logits_all=True (which slows prefill)
        return int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(V,)).argmax())

    llm.eval(prompts(1, prompt_len, V, 9)[0])  # warm-up
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompts(1, prompt_len, V, 1)[0])
    res = {"ttft_s": time.perf_counter() - t0}
    res["prefill_tok_s"] = prompt_len / res["ttft_s"]
    llm.reset()
    llm.eval(prompts(1, SHORT_PROMPT, V, 2)[0])
    t0 = time.perf_counter()
    for _ in range(decode):
        llm.eval([last_argmax()])
    res["decode_b1_tok_s"] = decode / (time.perf_counter() - t0)
    return res


ENGINES = {
    "ossgate": run_ossgate, "transformers": run_transformers, "reference": run_reference, "llama.cpp": run_llama_cpp,
}  # fmt: skip


@app.command("worker", hidden=True)
def worker(engine: str, path: Path, out: Path, prompt_len: int, decode: int, batches: str, kv_tokens: int,
           threads: int) -> None:  # fmt: skip
    """One engine, one checkpoint, in this process; writes its figures as JSON to `out`."""
    if threads:
        torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    res = ENGINES[engine](path, prompt_len, decode, [int(b) for b in batches.split(",") if b], kv_tokens)
    res |= {"peak_rss_gb": peak_rss_gb(), "load_before": load, "load_after": os.getloadavg()[0],
            "threads": torch.get_num_threads()}  # fmt: skip
    out.write_text(json.dumps(res))


def measure(engine: str, path: Path, prompt_len: int, decode: int, batches: list[int], kv_tokens: int = 0,
            threads: int = 0) -> dict:  # fmt: skip
    """Run one engine in a fresh subprocess; its figures, or {"error": ...} if it failed (e.g. out of memory)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"ossgate-bench-{os.getpid()}-{engine}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "ossgate.engine.bench", "worker", engine, str(path), str(out), str(prompt_len),
           str(decode), ",".join(map(str, batches)), str(kv_tokens), str(threads)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        killed = f"killed by signal {-proc.returncode} (out of memory?)"
        return {"error": tail[0][:200] if proc.returncode > 0 else killed}
    res = json.loads(out.read_text())
    out.unlink()
    res["wall_s"] = time.perf_counter() - t0
    return res


# ---- report ----------------------------------------------------------------------------------------


def metrics(results: dict[str, dict]) -> list[tuple[str, str]]:
    """(key, label) of the table's rows, with a pair of rows for every batch size any engine measured."""
    batches = sorted({int(k[len("decode_b"):-len("_tok_s")]) for r in results.values() for k in r
                      if k.startswith("decode_b") and k.endswith("_tok_s") and "steady" not in k} - {1})  # fmt: skip
    rows = [("prefill_tok_s", "prefill tok/s"), ("ttft_s", "TTFT s"), ("decode_b1_tok_s", "decode b1 tok/s")]
    for B in batches:
        rows.append((f"decode_b{B}_tok_s", f"aggregate b{B} tok/s"))
        rows.append((f"decode_b{B}_steady_tok_s", f"b{B}, all decoding tok/s"))
    return [*rows, ("peak_rss_gb", "peak RSS GB"), ("load_before", "load (1-min avg) before")]


def table(title: str, results: dict[str, dict]) -> str:
    """Markdown: one row per metric, one column per engine, plus ossgate / peer ratios."""
    engines = list(results)
    peers = [e for e in engines if e != "ossgate" and "error" not in results[e]]
    head = ["metric", *engines, *(f"ossgate/{p}" for p in peers)]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v) -> str:
        return "–" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    for key, label in metrics(results):
        vals = [results[e].get(key) for e in engines]
        if all(v is None for v in vals):
            continue
        ours = results.get("ossgate", {}).get(key)
        ratios = [fmt(ours / results[p][key]) if ours and results[p].get(key) and key != "load_before" else "–"
                  for p in peers]  # fmt: skip
        lines.append("| " + " | ".join([label, *map(fmt, vals), *ratios]) + " |")
    for e in engines:
        if "error" in results[e]:
            lines.append(f"\n{e}: not measured — {results[e]['error']}")
    return "\n".join(lines)


@app.command("run")
def run(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory (Hugging Face layout, MXFP4 experts).")],
    peers: Annotated[str, typer.Option(help="Comma-separated: transformers, reference, llama.cpp.")] = DEFAULT_PEERS,
    original: Annotated[Path | None, typer.Option(help="Original-layout copy (reference); made if missing.")] = None,
    gguf: Annotated[Path | None, typer.Option(help="The same weights as GGUF (for llama.cpp).")] = None,
    prompt: Annotated[int, typer.Option(help="Prompt tokens for the prefill measurement.")] = 512,
    decode: Annotated[int, typer.Option(help="Tokens decoded per sequence.")] = 32,
    batches: Annotated[str, typer.Option(help="Concurrent sequences for aggregate decode.")] = "8,32",
    kv_tokens: Annotated[int, typer.Option(help="Positions of KV cache ossgate holds while its RSS is read.")] = 8192,
    threads: Annotated[int, typer.Option(help="CPU threads for every engine (0 = PyTorch's default).")] = 0,
    repeat: Annotated[
        int, typer.Option(min=1, help="Rounds of all engines, alternated; the table shows each one's best.")
    ] = 1,
) -> None:
    """Measure ossgate and its peers on CHECKPOINT, one engine at a time; print a markdown table."""
    from ossgate.errors import OssgateError
    from ossgate.model.checkpoint import locate

    try:
        config = locate(checkpoint).config
    except OssgateError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    print(report(checkpoint, config, [p for p in peers.split(",") if p], original, gguf, prompt, decode,
                 [int(b) for b in batches.split(",") if b], kv_tokens, threads, repeat))  # fmt: skip


def best(runs: list[dict]) -> dict:
    """One engine's rounds -> its best figure per metric (most tok/s, least time; the largest RSS, to be safe)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    for key in ok[0]:
        values = [r[key] for r in ok if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)]
        if len(values) != len(ok) or key.startswith("load_"):
            continue
        out[key] = min(values) if key.endswith("_s") and not key.endswith("tok_s") else max(values)
    return out | {"rounds": len(runs)}


def report(ckpt: Path, config, peers: list[str], original: Path | None, gguf: Path | None, prompt_len: int,
           decode: int, batches: list[int], kv_tokens: int, threads: int = 0, repeat: int = 1) -> str:  # fmt: skip
    """Run everything for one checkpoint; the markdown section for it (with the bandwidth limit).

    With `repeat` > 1 the engines run in turn that many times (ours, the peers, ours, ...), so a slow
    stretch of the machine falls on every engine alike, and each is reported at its best round.
    """
    from rich.progress import Progress

    paths: dict[str, Path] = {"ossgate": ckpt}
    runs: dict[str, list[dict]] = {"ossgate": []}
    for peer in peers:
        runs[peer] = []
        paths[peer] = ckpt
        if peer == "reference":
            paths[peer] = original or ckpt.with_name(ckpt.name + "-original")
            if not (paths[peer] / "model.safetensors").exists():
                from ossgate.model.writer import to_original

                to_original(ckpt, paths[peer])
        if peer == "llama.cpp" and gguf is not None:
            paths[peer] = gguf
    with Progress(transient=True) as progress:
        task = progress.add_task(f"bench {ckpt.name}", total=repeat * len(runs))
        for _ in range(repeat):
            for engine in runs:
                if engine == "llama.cpp" and gguf is None:
                    runs[engine].append({"error": "no --gguf file given"})
                else:
                    kv = kv_tokens if engine == "ossgate" else 0
                    runs[engine].append(measure(engine, paths[engine], prompt_len, decode, batches, kv, threads))
                progress.advance(task)
    results = {engine: best(r) for engine, r in runs.items()}
    bw = read_bandwidth()  # with this process's default threads
    per_token = bytes_per_token(config)
    shape = f"{config.num_hidden_layers} layers, {config.num_local_experts} experts, D={config.hidden_size}"
    rounds = f"; best of {repeat} rounds, engines alternated" if repeat > 1 else ""
    lines = [table(f"{ckpt.name} ({shape}); prompt {prompt_len}, decode {decode}{rounds}", results), "",
             f"Memory-bandwidth limit at batch 1: {per_token / 1e9:.3f} GB read per token / "
             f"{bw / 1e9:.1f} GB/s measured "
             f"= {bw / per_token:.1f} tok/s (ossgate reaches "
             f"{results['ossgate'].get('decode_b1_tok_s', 0) * per_token / bw:.0%} of it).",
             f"\nRaw: `{json.dumps(runs if repeat > 1 else results)}`"]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    app()
