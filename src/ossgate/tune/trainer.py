"""A small, generic trainer for `Transformer` on packed sequences.

Full-parameter training today; LoRA fine-tuning will reuse it unchanged by passing its own
`parameters` (the adapters) — everything else (packing, exact loss, schedule, clipping, progress,
checkpoints, loss history) is the same. References: nanoGPT's train.py (cosine schedule with warmup,
AdamW without decay on norms and biases).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ossgate.model.transformer import Transformer
from ossgate.tune.batches import Batch
from ossgate.tune.loss import exact_cross_entropy

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 3e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    warmup: int = 50  # linear warm-up steps
    weight_decay: float = 0.01  # on matrices only
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100  # steps between checkpoints (0: only at the end)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def init_weights(model: Transformer, seed: int, std: float = 0.02) -> None:
    """Fresh weights for training from scratch (the module constructors leave experts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.fill_(1.0)
            elif name.endswith("bias") or name.endswith("sinks"):
                p.zero_()
            elif name.endswith("o_proj.weight") or name.endswith("down_proj"):
                # residual branches start small (GPT-2's 1/sqrt(2 * layers) scaling)
                p.normal_(0, std / math.sqrt(2 * model.config.num_hidden_layers), generator=gen)
            else:
                p.normal_(0, std, generator=gen)


def sequence_loss(model: Transformer, batch: Batch, n_unused: int = 0) -> torch.Tensor:
    """Weighted mean next-token loss on the batch's target positions; exact over `n_unused` extra zero-logit ids."""
    hidden = model(batch.tokens, batch.positions, batch.seq_lens)  # (T, D)
    at = batch.targeted
    selected = hidden[at]  # (N, D): only target positions are unembedded
    return exact_cross_entropy(model.logits(selected), batch.targets[at], n_unused, batch.weights[at])


class Trainer:
    """Runs `config.steps` optimizer steps over `batches`; `parameters` chooses what trains (all by default).

    `history` holds one row per step (step, loss, lr, seconds); checkpoints (model + optimizer + history)
    go to `out_dir/checkpoint.pt` atomically, so a run that is stopped keeps its last one and resumes.
    """

    def __init__(
        self,
        model: Transformer,
        config: TrainConfig,
        *,
        n_unused: int = 0,
        parameters: Iterable[tuple[str, torch.nn.Parameter]] | None = None,
        out_dir: Path | None = None,
        extra_state: dict | None = None,
    ) -> None:
        self.model, self.config, self.n_unused, self.out_dir = model, config, n_unused, out_dir
        self.extra_state = extra_state or {}
        named = list(parameters if parameters is not None else model.named_parameters())
        decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
        rest = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
        for _, p in named:
            p.requires_grad_(True)
        self.parameters = [p for _, p in named]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=config.lr,
            betas=config.betas,
        )
        self.step = 0
        self.history: list[dict] = []

    # ---- checkpoints --------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / "checkpoint.pt" if self.out_dir else None

    def save(self) -> None:
        if not self.checkpoint_path:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "history": self.history,
            "train_config": asdict(self.config),
            "extra": self.extra_state,
        }
        tmp = self.checkpoint_path.with_suffix(f".tmp{os.getpid()}")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)
        (self.out_dir / "history.json").write_text(json.dumps(self.history))

    def resume(self) -> bool:
        """Continue from `out_dir/checkpoint.pt` if there is one; True when it did."""
        if not self.checkpoint_path or not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history = state["step"], state["history"]
        log.info("resumed from %s at step %s", self.checkpoint_path, self.step)
        return True

    # ---- the loop -----------------------------------------------------------------------------

    def train_step(self, batch: Batch) -> float:
        lr = self.config.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        loss = sequence_loss(self.model, batch, self.n_unused)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def fit(
        self, batches: Iterator[Batch], on_step: Callable[[int, float], None] | None = None, progress: bool = True
    ) -> list[dict]:
        """Train until `config.steps`; shows a progress bar with the running loss."""
        columns = [
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        start = time.monotonic() - (self.history[-1]["seconds"] if self.history else 0.0)
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("train", total=self.config.steps, completed=self.step, loss="-")
            while self.step < self.config.steps:
                batch = next(batches)
                loss = self.train_step(batch)
                row = {
                    "step": self.step,
                    "loss": loss,
                    "lr": self.config.lr_at(self.step - 1),
                    "targets": batch.n_targets,
                    "seconds": round(time.monotonic() - start, 2),
                }
                self.history.append(row)
                smooth = sum(r["loss"] for r in self.history[-20:]) / len(self.history[-20:])
                bar.update(task, advance=1, loss=f"{smooth:.3f}")
                if on_step:
                    on_step(self.step, loss)
                if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                    self.save()
        self.save()
        return self.history
