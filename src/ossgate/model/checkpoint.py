"""Read gpt-oss checkpoints in both published layouts.

- Hugging Face: `config.json` + `model.safetensors.index.json` + `model-0000N-of-0000M.safetensors`,
  tensor names as in transformers (`model.layers.N.mlp.experts.gate_up_proj_blocks`, ...).
- Original: `original/config.json` + `original/model.safetensors`, names as in openai/gpt-oss
  (`block.N.attn.qkv.weight`, `block.N.mlp.mlp1_weight.blocks`, ...).

Everything is validated from the safetensors headers (names, shapes, dtypes, files present and whole)
before a single weight is read, so a broken checkpoint fails in a second with a message that names
the file or tensor, not after minutes of loading. Weights are memory-mapped shard by shard and MXFP4
expert tensors stay packed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress
from safetensors import SafetensorError, safe_open

from ossgate.errors import CheckpointError
from ossgate.model.config import ModelConfig
from ossgate.model.transformer import Rotary, Transformer

log = logging.getLogger(__name__)

_FLOAT_DTYPES = ("BF16", "F16", "F32")


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    kind: str  # "float" or "uint8"


def expected_tensors(config: ModelConfig) -> dict[str, TensorSpec]:
    """Every tensor a Hugging Face-layout checkpoint of this config holds, with its shape."""
    D, V, E = config.hidden_size, config.vocab_size, config.num_local_experts
    I, H, G, d = config.intermediate_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
    f = lambda *shape: TensorSpec(tuple(shape), "float")  # noqa: E731
    u8 = lambda *shape: TensorSpec(tuple(shape), "uint8")  # noqa: E731
    out = {"model.embed_tokens.weight": f(V, D), "model.norm.weight": f(D), "lm_head.weight": f(V, D)}
    for n in range(config.num_hidden_layers):
        p = f"model.layers.{n}."
        out |= {
            p + "input_layernorm.weight": f(D),
            p + "post_attention_layernorm.weight": f(D),
            p + "self_attn.q_proj.weight": f(H * d, D), p + "self_attn.q_proj.bias": f(H * d),
            p + "self_attn.k_proj.weight": f(G * d, D), p + "self_attn.k_proj.bias": f(G * d),
            p + "self_attn.v_proj.weight": f(G * d, D), p + "self_attn.v_proj.bias": f(G * d),
            p + "self_attn.o_proj.weight": f(D, H * d), p + "self_attn.o_proj.bias": f(D),
            p + "self_attn.sinks": f(H),
            p + "mlp.router.weight": f(E, D), p + "mlp.router.bias": f(E),
            p + "mlp.experts.gate_up_proj_bias": f(E, 2 * I),
            p + "mlp.experts.down_proj_bias": f(E, D),
        }  # fmt: skip
        if config.quantized:
            out |= {
                p + "mlp.experts.gate_up_proj_blocks": u8(E, 2 * I, D // 32, 16),
                p + "mlp.experts.gate_up_proj_scales": u8(E, 2 * I, D // 32),
                p + "mlp.experts.down_proj_blocks": u8(E, D, I // 32, 16),
                p + "mlp.experts.down_proj_scales": u8(E, D, I // 32),
            }
        else:
            out |= {p + "mlp.experts.gate_up_proj": f(E, D, 2 * I), p + "mlp.experts.down_proj": f(E, I, D)}
    return out


# ---- original layout: name mapping -------------------------------------------------------------

_ORIGINAL_SIMPLE = {
    "attn.norm.scale": "input_layernorm.weight",
    "attn.sinks": "self_attn.sinks",
    "attn.out.weight": "self_attn.o_proj.weight",
    "attn.out.bias": "self_attn.o_proj.bias",
    "mlp.norm.scale": "post_attention_layernorm.weight",
    "mlp.gate.weight": "mlp.router.weight",
    "mlp.gate.bias": "mlp.router.bias",
    "mlp.mlp1_weight.blocks": "mlp.experts.gate_up_proj_blocks",
    "mlp.mlp1_weight.scales": "mlp.experts.gate_up_proj_scales",
    "mlp.mlp1_bias": "mlp.experts.gate_up_proj_bias",
    "mlp.mlp2_weight.blocks": "mlp.experts.down_proj_blocks",
    "mlp.mlp2_weight.scales": "mlp.experts.down_proj_scales",
    "mlp.mlp2_bias": "mlp.experts.down_proj_bias",
}
_ORIGINAL_TOP = {"embedding.weight": "model.embed_tokens.weight", "norm.scale": "model.norm.weight",
                 "unembedding.weight": "lm_head.weight"}  # fmt: skip


def hf_to_original(config: ModelConfig, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and fuse q/k/v) a Hugging Face state dict into the original layout."""
    out = {orig: tensors[hf] for orig, hf in _ORIGINAL_TOP.items()}
    for n in range(config.num_hidden_layers):
        p = f"model.layers.{n}."
        for orig, hf in _ORIGINAL_SIMPLE.items():
            out[f"block.{n}.{orig}"] = tensors[p + hf]
        for kind in ("weight", "bias"):
            out[f"block.{n}.attn.qkv.{kind}"] = torch.cat([tensors[f"{p}self_attn.{x}_proj.{kind}"] for x in "qkv"])
    return out


def original_to_hf(config: ModelConfig, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {hf: tensors[orig] for orig, hf in _ORIGINAL_TOP.items()}
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    for n in range(config.num_hidden_layers):
        p = f"model.layers.{n}."
        for orig, hf in _ORIGINAL_SIMPLE.items():
            out[p + hf] = tensors[f"block.{n}.{orig}"]
        for kind in ("weight", "bias"):
            qkv = tensors[f"block.{n}.attn.qkv.{kind}"]
            for x, part in zip("qkv", qkv.split([q, kv, kv]), strict=True):
                out[f"{p}self_attn.{x}_proj.{kind}"] = part
    return out


# ---- locating and validating ---------------------------------------------------------------------


@dataclass
class CheckpointFiles:
    """A checkpoint on disk: its config, its layout and where each tensor lives."""

    root: Path
    config: ModelConfig
    layout: str  # "hf" or "original"
    where: dict[str, Path]  # tensor name (in the file's own naming) -> file


def _open(path: Path):
    try:
        return safe_open(str(path), framework="pt")
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: shard file is missing") from e
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); it may be truncated") from e


def _check_whole(path: Path) -> None:
    """safetensors maps lazily, so a truncated file only fails when a tensor is read; check the size now."""
    raw = path.read_bytes()[:8] if path.stat().st_size >= 8 else b""
    if len(raw) < 8:
        raise CheckpointError(f"{path}: truncated (shorter than a safetensors header)")
    header_len = int.from_bytes(raw, "little")
    with path.open("rb") as fh:
        fh.seek(8)
        try:
            header = json.loads(fh.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: header is damaged ({e}); the file may be truncated") from e
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if path.stat().st_size < 8 + header_len + end:
        raise CheckpointError(f"{path}: truncated ({path.stat().st_size} bytes, header says {8 + header_len + end})")


def locate(path: str | Path) -> CheckpointFiles:
    """Find a checkpoint's layout, config and shards; validate every tensor's presence, shape and dtype."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a directory")
    if (root / "config.json").exists() and (
        (root / "model.safetensors.index.json").exists() or list(root.glob("model*.safetensors"))
    ):
        files = _locate_hf(root)
    elif (root / "original" / "config.json").exists():
        files = _locate_original(root / "original")
    elif (root / "config.json").exists() and (root / "model.safetensors").exists():
        files = _locate_original(root)
    else:
        raise CheckpointError(
            f"{root}: not a gpt-oss checkpoint (no config.json with model*.safetensors, nor original/)"
        )
    _validate(files)
    return files


def _locate_hf(root: Path) -> CheckpointFiles:
    config = ModelConfig.load(root / "config.json")
    index = root / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: not a safetensors index ({e})") from e
        where = {name: root / fname for name, fname in weight_map.items()}
        for shard in sorted(set(where.values())):
            if not shard.exists():
                raise CheckpointError(f"{shard}: shard listed in {index.name} is missing")
    else:
        where = {}
        for shard in sorted(root.glob("model*.safetensors")):
            with _open(shard) as f:
                where |= {k: shard for k in f.keys()}
    # A dense (bf16) fine-tune carries experts.gate_up_proj instead of _blocks; follow the files, not the config.
    if any(k.endswith("mlp.experts.gate_up_proj") for k in where):
        config.quantized = False
    return CheckpointFiles(root, config, "hf", where)


def _locate_original(root: Path) -> CheckpointFiles:
    config = ModelConfig.load(root / "config.json")
    where = {}
    shards = sorted(root.glob("*.safetensors"))
    if not shards:
        raise CheckpointError(f"{root}: no .safetensors files")
    for shard in shards:
        with _open(shard) as f:
            where |= {k: shard for k in f.keys()}
    return CheckpointFiles(root, config, "original", where)


def _expected_in_file_names(files: CheckpointFiles) -> dict[str, TensorSpec]:
    expected = expected_tensors(files.config)
    if files.layout == "hf":
        return expected
    c = files.config
    renamed = {orig: expected[hf] for orig, hf in _ORIGINAL_TOP.items()}
    qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim
    for n in range(c.num_hidden_layers):
        for orig, hf in _ORIGINAL_SIMPLE.items():
            renamed[f"block.{n}.{orig}"] = expected[f"model.layers.{n}.{hf}"]
        renamed[f"block.{n}.attn.qkv.weight"] = TensorSpec((qkv, c.hidden_size), "float")
        renamed[f"block.{n}.attn.qkv.bias"] = TensorSpec((qkv,), "float")
    return renamed


def _validate(files: CheckpointFiles) -> None:
    expected = _expected_in_file_names(files)
    for name in expected:
        if name not in files.where:
            raise CheckpointError(f"{files.root}: tensor {name} is missing")
    for shard in sorted(set(files.where.values())):
        _check_whole(shard)
        with _open(shard) as f:
            for name in f.keys():
                spec = expected.get(name)
                if spec is None:
                    continue  # extra tensors (e.g. from newer exports) are ignored, like transformers does
                sl = f.get_slice(name)
                shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
                if shape != spec.shape:
                    raise CheckpointError(f"{shard.name}: tensor {name} has shape {shape}, expected {spec.shape}")
                ok = dtype == "U8" if spec.kind == "uint8" else dtype in _FLOAT_DTYPES
                if not ok:
                    want = "U8" if spec.kind == "uint8" else "a float type"
                    raise CheckpointError(f"{shard.name}: tensor {name} has dtype {dtype}, expected {want}")


# ---- loading ------------------------------------------------------------------------------------


def iter_tensors(files: CheckpointFiles, show_progress: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) in the file's own naming, shard by shard, with a progress bar over bytes."""
    shards = sorted(set(files.where.values()))
    total = sum(s.stat().st_size for s in shards)
    with Progress(transient=True, disable=not show_progress) as progress:
        task = progress.add_task(f"loading {files.root.name}", total=total)
        for shard in shards:
            with _open(shard) as f:
                for name in f.keys():
                    if files.where.get(name) == shard:
                        yield name, f.get_tensor(name)
            progress.advance(task, shard.stat().st_size)


def read_state_dict(files: CheckpointFiles, show_progress: bool = False) -> dict[str, torch.Tensor]:
    """All tensors in Hugging Face naming (for conversion and tools; loading a model uses `load_model`)."""
    tensors = dict(iter_tensors(files, show_progress))
    return original_to_hf(files.config, tensors) if files.layout == "original" else tensors


def load_model(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    show_progress: bool = True,
) -> Transformer:
    """Load a checkpoint into a Transformer. Float weights become `dtype` (norms stay fp32); MXFP4 stays packed."""
    files = locate(path)
    config = files.config
    with torch.device("meta"):
        model = Transformer(config)
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    tensors = iter_tensors(files, show_progress)
    if files.layout == "original":
        # the original layout fuses q/k/v, so renaming needs whole layers; tensors are views, not copies
        tensors = iter(original_to_hf(config, dict(tensors)).items())
    loaded = set()
    for name, tensor in tensors:
        if name not in params:
            continue
        target = params[name]
        if tensor.dtype == torch.uint8:
            value = tensor
        elif name.endswith("layernorm.weight") or name == "model.norm.weight":
            value = tensor.to(torch.float32)
        else:
            value = tensor.to(dtype)
        _assign(model, name, value.to(device), isinstance(target, torch.nn.Parameter))
        loaded.add(name)
    missing = [n for n in params if n not in loaded and not n.endswith("rotary.inv_freq")]
    if missing:
        raise CheckpointError(f"{files.root}: tensor {missing[0]} was not loaded")
    model.model.rotary = Rotary(config).to(device)
    model.requires_grad_(False)
    model.eval()
    return model


def _assign(model: torch.nn.Module, name: str, value: torch.Tensor, is_param: bool) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    if is_param:
        setattr(owner, attr, torch.nn.Parameter(value, requires_grad=False))
    else:
        owner._buffers[attr] = value
