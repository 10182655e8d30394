"""The gpt-oss model configuration, read from a checkpoint's config.json (either published layout)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ossgate.errors import CheckpointError


@dataclass
class ModelConfig:
    """Every shape the network needs; nothing is hard-coded elsewhere (20b and 120b differ only here)."""

    num_hidden_layers: int = 24
    num_local_experts: int = 32
    num_experts_per_tok: int = 4
    vocab_size: int = 201088
    hidden_size: int = 2880
    intermediate_size: int = 2880
    head_dim: int = 64
    num_attention_heads: int = 64
    num_key_value_heads: int = 8
    sliding_window: int = 128
    max_position_embeddings: int = 131072
    rope_theta: float = 150000.0
    rope_factor: float = 32.0  # YaRN: context stretched 32x over the 4096 positions it was pretrained on
    rope_beta_fast: float = 32.0
    rope_beta_slow: float = 1.0
    rope_original_max_position: int = 4096
    rms_norm_eps: float = 1e-5
    swiglu_limit: float = 7.0
    swiglu_alpha: float = 1.702
    layer_types: list[str] = field(default_factory=list)  # "sliding_attention" | "full_attention" per layer
    quantized: bool = True  # experts stored as MXFP4 blocks + scales (vs. plain bf16 tensors)
    eos_token_id: int = 200002
    pad_token_id: int = 199999

    def __post_init__(self) -> None:
        if not self.layer_types:
            # sliding window only on every other layer, starting with the first (as the reference does)
            self.layer_types = [
                "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(self.num_hidden_layers)
            ]

    def is_sliding(self, layer: int) -> bool:
        return self.layer_types[layer] == "sliding_attention"

    @property
    def rope_concentration(self) -> float:
        return 0.1 * math.log(self.rope_factor) + 1.0 if self.rope_factor > 1 else 1.0

    # ---- config.json in the Hugging Face layout -------------------------------------------------

    @classmethod
    def from_hf_dict(cls, raw: dict, source: str = "config.json") -> ModelConfig:
        required = [
            "num_hidden_layers", "num_local_experts", "vocab_size", "hidden_size", "intermediate_size",
            "num_attention_heads", "num_key_value_heads",
        ]  # fmt: skip
        missing = [k for k in required if k not in raw]
        if missing:
            raise CheckpointError(f"{source}: missing key(s) {', '.join(missing)}")
        rope = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
        quant = raw.get("quantization_config") or {}
        if quant and quant.get("quant_method") != "mxfp4":
            raise CheckpointError(
                f"{source}: quantization method {quant.get('quant_method')!r} is not supported (mxfp4 only)"
            )
        return cls(
            num_hidden_layers=raw["num_hidden_layers"],
            num_local_experts=raw["num_local_experts"],
            num_experts_per_tok=raw.get("num_experts_per_tok", raw.get("experts_per_token", 4)),
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            head_dim=raw.get("head_dim", raw["hidden_size"] // raw["num_attention_heads"]),
            num_attention_heads=raw["num_attention_heads"],
            num_key_value_heads=raw["num_key_value_heads"],
            sliding_window=raw.get("sliding_window") or 128,
            max_position_embeddings=raw.get("max_position_embeddings", 131072),
            rope_theta=float(raw.get("rope_theta", rope.get("rope_theta", 150000.0))),
            rope_factor=float(rope.get("factor", 32.0)),
            rope_beta_fast=float(rope.get("beta_fast", 32.0)),
            rope_beta_slow=float(rope.get("beta_slow", 1.0)),
            rope_original_max_position=int(
                rope.get("original_max_position_embeddings", raw.get("initial_context_length", 4096))
            ),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
            swiglu_limit=float(raw.get("swiglu_limit", 7.0)),
            layer_types=list(raw.get("layer_types") or []),
            quantized=bool(quant),
            eos_token_id=_first(raw.get("eos_token_id", 200002)),
            pad_token_id=raw.get("pad_token_id") or 199999,
        )

    def to_hf_dict(self) -> dict:
        out = {
            "architectures": ["GptOssForCausalLM"],
            "model_type": "gpt_oss",
            "attention_bias": True,
            "attention_dropout": 0.0,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "experts_per_token": self.num_experts_per_tok,
            "num_experts_per_tok": self.num_experts_per_tok,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initial_context_length": self.rope_original_max_position,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_types": self.layer_types,
            "max_position_embeddings": self.max_position_embeddings,
            "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "num_local_experts": self.num_local_experts,
            "output_router_logits": False,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_scaling": {
                "beta_fast": self.rope_beta_fast,
                "beta_slow": self.rope_beta_slow,
                "factor": self.rope_factor,
                "original_max_position_embeddings": self.rope_original_max_position,
                "rope_type": "yarn",
                "truncate": False,
            },
            "rope_theta": self.rope_theta,
            "router_aux_loss_coef": 0.9,
            "sliding_window": self.sliding_window,
            "swiglu_limit": self.swiglu_limit,
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
            "use_cache": True,
            "vocab_size": self.vocab_size,
        }
        if self.quantized:
            out["quantization_config"] = {
                "modules_to_not_convert": [
                    "model.layers.*.self_attn",
                    "model.layers.*.mlp.router",
                    "model.embed_tokens",
                    "lm_head",
                ],  # fmt: skip
                "quant_method": "mxfp4",
            }
        return out

    # ---- config.json in the original layout (original/config.json) ------------------------------

    @classmethod
    def from_original_dict(cls, raw: dict, source: str = "original/config.json") -> ModelConfig:
        required = ["num_hidden_layers", "num_experts", "vocab_size", "hidden_size", "intermediate_size",
                    "num_attention_heads", "num_key_value_heads"]  # fmt: skip
        missing = [k for k in required if k not in raw]
        if missing:
            raise CheckpointError(f"{source}: missing key(s) {', '.join(missing)}")
        return cls(
            num_hidden_layers=raw["num_hidden_layers"],
            num_local_experts=raw["num_experts"],
            num_experts_per_tok=raw.get("experts_per_token", 4),
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            head_dim=raw.get("head_dim", 64),
            num_attention_heads=raw["num_attention_heads"],
            num_key_value_heads=raw["num_key_value_heads"],
            sliding_window=raw.get("sliding_window", 128),
            rope_theta=float(raw.get("rope_theta", 150000.0)),
            rope_factor=float(raw.get("rope_scaling_factor", 32.0)),
            rope_beta_fast=float(raw.get("rope_ntk_beta", 32.0)),
            rope_beta_slow=float(raw.get("rope_ntk_alpha", 1.0)),
            rope_original_max_position=int(raw.get("initial_context_length", 4096)),
            swiglu_limit=float(raw.get("swiglu_limit", 7.0)),
        )

    def to_original_dict(self) -> dict:
        return {
            "num_hidden_layers": self.num_hidden_layers,
            "num_experts": self.num_local_experts,
            "experts_per_token": self.num_experts_per_tok,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "swiglu_limit": self.swiglu_limit,
            "head_dim": self.head_dim,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "sliding_window": self.sliding_window,
            "initial_context_length": self.rope_original_max_position,
            "rope_theta": self.rope_theta,
            "rope_scaling_factor": self.rope_factor,
            "rope_ntk_alpha": self.rope_beta_slow,
            "rope_ntk_beta": self.rope_beta_fast,
        }

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: no config.json; not a gpt-oss checkpoint directory") from e
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: invalid JSON ({e})") from e
        if path.parent.name == "original" and "num_experts" in raw:
            return cls.from_original_dict(raw, str(path))
        if raw.get("model_type") not in (None, "gpt_oss"):
            raise CheckpointError(f"{path}: model_type is {raw.get('model_type')!r}, not gpt_oss")
        return cls.from_hf_dict(raw, str(path))

    def as_dict(self) -> dict:
        return asdict(self)


def _first(value: int | list[int]) -> int:
    return value[0] if isinstance(value, list) else value


# Named shapes for the checkpoint writer: the published ones and small ones for quick runs.
SHAPES: dict[str, dict] = {
    "20b": dict(num_hidden_layers=24, num_local_experts=32),
    "120b": dict(num_hidden_layers=36, num_local_experts=128),
    "tiny": dict(
        num_hidden_layers=4,
        num_local_experts=8,
        num_experts_per_tok=2,
        hidden_size=64,
        intermediate_size=64,
        head_dim=16,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=8,
    ),
}


def shape_config(shape: str, layers: int | None = None, **overrides) -> ModelConfig:
    if shape not in SHAPES:
        raise CheckpointError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    kw = dict(SHAPES[shape]) | overrides
    if layers is not None:
        kw["num_hidden_layers"] = layers
    return ModelConfig(**kw)
