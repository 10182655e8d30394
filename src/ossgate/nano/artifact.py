"""The shipped gpt-oss-nano: a compact file in the package, a full checkpoint in the data dir.

The model uses ~3k of o200k_harmony's 201088 ids; the other embedding and unembedding rows are exactly
zero. The package therefore stores only the used rows (with their ids) and every other tensor as it will
appear in the checkpoint, experts already packed as MXFP4 — about a megabyte or two. `model_path()`
expands that once into `data_dir()/models/gpt-oss-nano/`: config.json, safetensors shards with an index,
MXFP4 experts, tokenizer files — the Hugging Face gpt-oss layout, loadable by ossgate and transformers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ossgate.errors import CheckpointError
from ossgate.model import mxfp4
from ossgate.model.config import ModelConfig
from ossgate.model.tokenizer_files import CHAT_TEMPLATE
from ossgate.model.transformer import Transformer
from ossgate.model.writer import write_hf
from ossgate.tune.vocab import CompactVocab
from ossgate.vocab import data_dir

log = logging.getLogger(__name__)

NAME = "gpt-oss-nano"
COMPACT_FILE = "nano.safetensors"
ROWS = ("model.embed_tokens.weight", "lm_head.weight")  # stored as used rows only
_STAMP = ".source-sha256"  # which compact file a materialised directory came from


def shipped_dir() -> Path:
    """The package directory that holds the compact model (src/ossgate/models/gpt-oss-nano)."""
    return Path(str(resources.files("ossgate"))) / "models" / NAME


def checkpoint_tensors(model: Transformer, quantize: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's tensors in Hugging Face naming and dtypes (bf16; norms fp32 -> bf16 as published; MXFP4 experts)."""
    for name, t in model.state_dict().items():
        if name.endswith("rotary.inv_freq"):
            continue
        t = t.detach()
        if quantize and (name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj")):
            blocks, scales = mxfp4.quantize(t.float().transpose(1, 2))  # (E, out, in): blocks run along `in`
            yield name + "_blocks", blocks  # (E, out, in/32, 16)
            yield name + "_scales", scales
        else:
            yield name, t.to(torch.bfloat16)


def expand_model(model: Transformer, vocab: CompactVocab) -> Transformer:
    """A compact-vocabulary model as a full-vocabulary Transformer (dense experts, fp32, unused rows zero)."""
    config = ModelConfig(**(model.config.as_dict() | {"vocab_size": vocab.full_size, "quantized": False}))
    full = Transformer(config)
    state = {k: (vocab.expand_rows(v.float()) if k in ROWS else v.float()) for k, v in model.state_dict().items()}
    full.load_state_dict(state)
    full.requires_grad_(False)
    return full.eval()


def export_compact(model: Transformer, vocab: CompactVocab, out: Path, extra: dict | None = None) -> Path:
    """Write the compact shipped form of a compact-vocabulary model: nano.safetensors, config.json, training.json."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = dict(checkpoint_tensors(model))
    tensors["vocab_ids"] = torch.tensor(vocab.ids, dtype=torch.int32)
    full = ModelConfig(**(model.config.as_dict() | {"vocab_size": vocab.full_size, "quantized": True}))
    tmp = out / f".{COMPACT_FILE}.tmp{os.getpid()}"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt", "model": NAME})
    tmp.chmod(0o644)  # safetensors writes 0600; the file ships in the package
    tmp.replace(out / COMPACT_FILE)
    (out / "config.json").write_text(json.dumps(full.to_hf_dict(), indent=2) + "\n")
    if extra:
        (out / "training.json").write_text(json.dumps(extra, indent=2) + "\n")
    return out / COMPACT_FILE


def full_tensors(compact: dict[str, torch.Tensor], config: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Compact tensors -> every checkpoint tensor, embedding rows scattered into zero tables of vocab_size."""
    vocab = CompactVocab(compact["vocab_ids"].tolist(), config.vocab_size)
    for name, t in compact.items():
        if name == "vocab_ids":
            continue
        yield name, vocab.expand_rows(t) if name in ROWS else t


def materialise(source: Path, target: Path) -> Path:
    """Expand the compact model in `source` into a full checkpoint at `target`, once.

    Built aside and renamed into place under a file lock, so concurrent first uses (server workers,
    tests) build it once and nobody ever sees a half-written directory. A directory made from an
    older shipped file (its stamp differs) is replaced.
    """
    compact_file = source / COMPACT_FILE
    if not compact_file.exists():
        raise CheckpointError(f"{compact_file}: the shipped {NAME} model is missing; reinstall ossgate")
    # the written files also depend on the writer's chat template: a new one rebuilds the directory
    digest = hashlib.sha256(compact_file.read_bytes() + CHAT_TEMPLATE.read_bytes()).hexdigest()
    if _stamp_matches(target, digest):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _stamp_matches(target, digest):  # another process built it while we waited
            return target
        config = ModelConfig.load(source / "config.json")
        compact = load_file(str(compact_file))
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("materialising %s into %s", NAME, target)
        write_hf(config, full_tensors(compact, config), tmp)
        if (source / "training.json").exists():
            shutil.copy(source / "training.json", tmp / "training.json")
        (tmp / _STAMP).write_text(digest + "\n")
        if target.exists():
            old = target.with_name(f".{target.name}.old{os.getpid()}")
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(target)
    return target


def _stamp_matches(target: Path, digest: str) -> bool:
    stamp = target / _STAMP
    return stamp.exists() and stamp.read_text().strip() == digest


def model_path(source: Path | None = None) -> Path:
    """A checkpoint directory for `source` (default: the shipped gpt-oss-nano), materialised on first use.

    `source` may be what `ossgate nano train --ship` wrote (a compact model) or already a checkpoint
    directory, returned as it is; a compact one other than the shipped gets its own directory, named
    after its path, so evaluating a new run never replaces the default model.
    """
    if source is None:
        return materialise(shipped_dir(), data_dir() / "models" / NAME)
    if not (source / COMPACT_FILE).exists():
        return source
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    return materialise(source, data_dir() / "models" / f"{NAME}-{key}")
