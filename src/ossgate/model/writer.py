"""Write gpt-oss checkpoints: random ones in the exact published layout, conversions and quantisation.

Real gpt-oss weights can't be downloaded here, so tests and benchmarks run the real loader on
checkpoints this module writes: same file names, tensor names, shapes, dtypes and MXFP4 packing as
the Hugging Face release, so transformers (and llama.cpp's converter) read them too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from rich.progress import Progress
from safetensors.torch import save_file

from ossgate.errors import CheckpointError
from ossgate.model import mxfp4
from ossgate.model.checkpoint import expected_tensors, hf_to_original, locate, read_state_dict
from ossgate.model.config import ModelConfig

SHARD_BYTES = 2 * 1024**3  # small shards keep the writer's (and reader's) memory low


def _random_tensor(name: str, shape: tuple[int, ...], config: ModelConfig, gen: torch.Generator) -> torch.Tensor:
    if name.endswith("_blocks"):
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    if name.endswith("_scales"):
        # 2**-7 .. 2**-6 per block: E2M1 codes up to 6 give weights of std ~0.02, like a trained model
        return torch.randint(120, 122, shape, dtype=torch.uint8, generator=gen)
    if "layernorm" in name or name == "model.norm.weight":
        return (1 + 0.1 * torch.randn(shape, generator=gen)).to(torch.bfloat16)
    if name.endswith("sinks"):
        return torch.randn(shape, generator=gen).to(torch.bfloat16)
    std = 0.02 if name.endswith("weight") or name.endswith("_proj") else 0.01
    if name.endswith("embed_tokens.weight"):
        std = 1.0  # embeddings feed an RMSNorm; unit scale keeps activations in a trained model's range
    return (std * torch.randn(shape, generator=gen)).to(torch.bfloat16)


def random_state(config: ModelConfig, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    """Random tensors for every name the checkpoint holds, in a stable order, from one seed."""
    gen = torch.Generator().manual_seed(seed)
    for name, spec in expected_tensors(config).items():
        yield name, _random_tensor(name, spec.shape, config, gen)


def write_hf(
    config: ModelConfig, tensors: Iterator[tuple[str, torch.Tensor]], out: Path, total: int | None = None
) -> None:
    """Write tensors as `model-0000N-of-0000M.safetensors` shards + index + config.json (+ tokenizer)."""
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    tmp_names: list[Path] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"writing {out.name}", total=total)
        for name, tensor in tensors:
            nbytes = tensor.numel() * tensor.element_size()
            if size and size + nbytes > SHARD_BYTES:
                tmp_names.append(_flush(shards[-1], out, len(tmp_names)))
                shards.append({})
                size = 0
            shards[-1][name] = tensor.contiguous()
            size += nbytes
            progress.advance(task, nbytes)
        tmp_names.append(_flush(shards[-1], out, len(tmp_names)))
    n = len(tmp_names)
    weight_map, total_size = {}, 0
    for i, tmp in enumerate(tmp_names):
        final = out / f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        tmp.replace(final)
        for name, nbytes in json.loads(tmp.with_suffix(".names").read_text()).items():
            weight_map[name] = final.name
            total_size += nbytes
        tmp.with_suffix(".names").unlink()
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2))
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 199998, "eos_token_id": [200002, 199999, 200012], "pad_token_id": 199999}, indent=2)
    )
    from ossgate.model.tokenizer_files import write_tokenizer_files

    write_tokenizer_files(out)


def _flush(shard: dict[str, torch.Tensor], out: Path, i: int) -> Path:
    tmp = out / f".shard-{i}.safetensors"
    save_file(shard, str(tmp), metadata={"format": "pt"})
    tmp.with_suffix(".names").write_text(json.dumps({k: v.numel() * v.element_size() for k, v in shard.items()}))
    shard.clear()
    return tmp


def new_checkpoint(config: ModelConfig, out: Path, seed: int = 0) -> None:
    """A random checkpoint in the Hugging Face layout (MXFP4 experts unless config.quantized is False)."""
    total = sum(
        torch.Size(s.shape).numel() * (1 if s.kind == "uint8" else 2) for s in expected_tensors(config).values()
    )
    write_hf(config, random_state(config, seed), out, total)


def quantize_checkpoint(src: Path, out: Path) -> None:
    """Dense (bf16) experts -> MXFP4 blocks/scales, everything else copied: how fine-tunes get re-packed."""
    files = locate(src)
    config = files.config
    tensors = read_state_dict(files)

    def converted() -> Iterator[tuple[str, torch.Tensor]]:
        for name, t in tensors.items():
            if name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
                blocks, scales = mxfp4.quantize(t.float().transpose(1, 2))  # (E, out, in): blocks run along `in`
                yield name + "_blocks", blocks
                yield name + "_scales", scales
            else:
                yield name, t

    quantized = ModelConfig(**(config.as_dict() | {"quantized": True}))
    write_hf(quantized, converted(), out)


def to_original(src: Path, out: Path) -> None:
    """Write a checkpoint in openai/gpt-oss's original layout (`original/config.json`, `original/model.safetensors`)."""
    files = locate(src)
    if not files.config.quantized:
        raise CheckpointError(
            f"{src}: the original layout stores MXFP4 experts; run `ossgate checkpoint quantize` first"
        )
    tensors = hf_to_original(files.config, read_state_dict(files))
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"), metadata={"format": "pt"}
    )
    (out / "config.json").write_text(json.dumps(files.config.to_original_dict(), indent=2))
    for extra in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (files.root / extra).exists():
            shutil.copy(files.root / extra, out / extra)
