"""Decode-step attention with sinks on x86 CPUs (attention_cpu.cpp, built by `kernels.build`).

One call per sequence and layer replaces ~20 small PyTorch ops, whose dispatch dominated a decode
step's attention at short and medium contexts. Long contexts keep PyTorch's batched einsum.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import Tensor

from ossgate.model.kernels import build, tracks_grad
from ossgate.model.kernels.build import I64, PTR

SOURCE = Path(__file__).with_name("attention_cpu.cpp")
# Visible keys up to which one native call beats PyTorch's ops (it is single-threaded).
MAX_KEYS = 4096


@functools.cache
def _library() -> ctypes.CDLL | None:
    return build.load(SOURCE, {"attention_decode": [PTR, I64, I64, I64, PTR, PTR, PTR, I64, I64, I64, PTR, PTR]})


def applies(q: Tensor, k: Tensor) -> bool:
    """One query token, bf16 on CPU, head dim a multiple of 16, a cache no longer than MAX_KEYS, no autograd."""
    return (
        q.shape[0] == 1
        and not tracks_grad(q, k)
        and q.dtype == k.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and q.shape[-1] % 16 == 0
        and k.shape[0] <= MAX_KEYS
        and _library() is not None
    )


def decode(q: Tensor, k: Tensor, v: Tensor, sinks: Tensor, q_pos: int, k_pos: Tensor, window: int | None) -> Tensor:
    """q (1, H, d), k and v (S, G, d), k_pos (S,) -> (1, H*d) bf16, as `sdpa_with_sinks`."""
    _, H, d = q.shape
    S, G, _ = k.shape
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    k_pos, sinks = k_pos.to(torch.int64).contiguous(), sinks.float().contiguous()
    out = torch.empty(1, H * d, dtype=torch.bfloat16)
    _library().attention_decode(
        q.data_ptr(), H, G, d, k.data_ptr(), v.data_ptr(), k_pos.data_ptr(), S, q_pos, window or 0,
        sinks.data_ptr(), out.data_ptr(),
    )  # fmt: skip
    return out
