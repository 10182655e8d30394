"""MXFP4 expert matmuls on x86 CPUs: a fused decode-and-multiply kernel (int8 activations) and a fast dequantiser.

The C++ source beside this file (mxfp4_cpu.cpp) is compiled on first use by `kernels.build`.

`available()` is False (and callers use their PyTorch path) where the CPU lacks AVX-512 BF16/VNNI, no
compiler is found, or OSSGATE_NATIVE_KERNELS=0.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

import torch
from torch import Tensor

from ossgate.model.kernels import build
from ossgate.model.kernels.build import F32, I64, PTR

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("mxfp4_cpu.cpp")
# Scale bytes for which adding the scale to a bf16 exponent stays exact (0.5*2**(s-127) and
# 6*2**(s-127) are normal bf16 numbers); checkpoints outside this range use the PyTorch path.
SCALE_RANGE = (2, 252)
# Tokens per expert up to which decoding the weights inside the dot products wins; past it, one
# dequantisation to bf16 and a bf16 matmul (AMX/oneDNN) wins. Measured on a Xeon (Sapphire Rapids),
# 5760x2880, 2 threads: fused 2.2/3.2/4.5 ms for 16/24/32 tokens vs dequantise + matmul 3.0/3.0/3.5 ms
# (1 thread: 4.0/6.0/7.1 vs 5.4/5.3/5.3 ms).
FUSED_MAX_TOKENS = 16
MAX_GROUPS = 512  # blocks per row the kernel's stack buffers hold (MAX_PAIRS in the .cpp): K up to 16384


@functools.cache
def _library() -> ctypes.CDLL | None:
    moe = [PTR, I64, I64, PTR, PTR, I64, I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, F32, F32, PTR]
    return build.load(
        SOURCE,
        {
            "mxfp4_linear": [PTR, I64, PTR, PTR, I64, I64, PTR, PTR],
            "mxfp4_dequantize": [PTR, PTR, I64, I64, PTR],
            "swiglu_bf16": [PTR, I64, I64, F32, F32, PTR],
            "scatter_add_rows": [PTR, I64, PTR, PTR, PTR, I64],
            "moe_decode": moe,
        },
    )


def available() -> bool:
    """True if the native kernels can run here (CPU features present and the library builds)."""
    return _library() is not None


def supports(blocks: torch.Tensor, scales: torch.Tensor) -> bool:
    """Whether these packed weights can take the native path (CPU, K ≤ 16384, scales in range)."""
    if blocks.device.type != "cpu" or blocks.shape[-2] > MAX_GROUPS or not available():
        return False
    lo, hi = int(scales.min()), int(scales.max())
    return SCALE_RANGE[0] <= lo and hi <= SCALE_RANGE[1]


def linear(x: torch.Tensor, blocks: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None) -> Tensor:
    """x (n, K) bf16, blocks (O, K/32, 16), scales (O, K/32), bias (O,) bf16 -> x @ W^T + bias, (n, O) fp32.

    x is quantised to int8 per 32-block on the way in (Q8_0: scale max|x|/127, round to nearest even),
    as llama.cpp does; the result is exact for those rounded activations.
    """
    O, G = scales.shape
    n, K = x.shape
    assert K == G * 32 and blocks.shape == (O, G, 16), f"x {tuple(x.shape)} does not match blocks {tuple(blocks.shape)}"
    x = x.to(torch.bfloat16).contiguous()
    blocks, scales = blocks.contiguous(), scales.contiguous()
    out = torch.empty(n, O, dtype=torch.float32)
    b = None if bias is None else bias.to(torch.bfloat16).contiguous()
    _library().mxfp4_linear(
        x.data_ptr(), n, blocks.data_ptr(), scales.data_ptr(), O, K, None if b is None else b.data_ptr(), out.data_ptr()
    )
    return out


def dequantize(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """blocks (O, K/32, 16), scales (O, K/32) -> W (O, K) bf16; same values as mxfp4.dequantize."""
    O, G = scales.shape
    blocks, scales = blocks.contiguous(), scales.contiguous()
    out = torch.empty(O, G * 32, dtype=torch.bfloat16)
    _library().mxfp4_dequantize(blocks.data_ptr(), scales.data_ptr(), O, G * 32, out.data_ptr())
    return out


def matmul(x: torch.Tensor, blocks: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None) -> Tensor:
    """x (n, K) bf16 @ W^T + bias -> (n, O) fp32, by whichever path is faster for n tokens."""
    if x.shape[0] <= FUSED_MAX_TOKENS:
        return linear(x, blocks, scales, bias)
    w = dequantize(blocks, scales)  # (O, K)
    y = torch.nn.functional.linear(x.to(torch.bfloat16), w, None if bias is None else bias.to(torch.bfloat16))
    return y.float()


def swiglu(h: torch.Tensor, alpha: float, limit: float) -> Tensor:
    """h (n, 2I) fp32, gate/up interleaved -> gpt-oss SwiGLU (n, I) bf16, computed in fp32."""
    h = h.float().contiguous()
    out = torch.empty(h.shape[0], h.shape[1] // 2, dtype=torch.bfloat16)
    _library().swiglu_bf16(h.data_ptr(), h.shape[0], h.shape[1] // 2, alpha, limit, out.data_ptr())
    return out


def expert(x: torch.Tensor, up: tuple[Tensor, Tensor, Tensor], down: tuple[Tensor, Tensor, Tensor], alpha: float,
           limit: float) -> Tensor:  # fmt: skip
    """One expert MLP on its tokens: x (n, D) bf16; up/down = (blocks, scales, bias) -> (n, D) fp32."""
    h = swiglu(matmul(x, *up), alpha, limit)  # (n, I)
    return matmul(h, *down)


def scatter_add(out: torch.Tensor, tok: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
    """out (T, D) fp32 += w (n,) * y (n, D) at rows tok (n,), in place (index_add_ without its thread barrier)."""
    assert out.dtype == torch.float32 and out.is_contiguous(), "scatter_add needs a contiguous fp32 output"
    y, tok, w = y.float().contiguous(), tok.to(torch.int64).contiguous(), w.float().contiguous()
    _library().scatter_add_rows(out.data_ptr(), out.shape[1], y.data_ptr(), tok.data_ptr(), w.data_ptr(), y.shape[0])


def moe_decode(
    x: Tensor,
    expert_idx: Tensor,
    expert_w: Tensor,
    up: tuple[Tensor, Tensor, Tensor],
    down: tuple[Tensor, Tensor, Tensor],
    alpha: float,
    limit: float,
) -> Tensor:
    """A whole MoE layer in one native call, for steps where no expert gets more than FUSED_MAX_TOKENS tokens.

    x (T, D) bf16, expert_idx (T, k), expert_w (T, k); up/down = every expert's (blocks, scales, bias)
    -> (T, D) fp32, the routing-weighted sum of the experts' outputs. One parallel region for the layer
    instead of two per expert, and no Python between experts.
    """
    T, D = x.shape
    E, two_i = up[2].shape
    x = x.to(torch.bfloat16).contiguous()
    idx, w = expert_idx.to(torch.int64).contiguous(), expert_w.float().contiguous()
    up = tuple(t.contiguous() for t in up[:2]) + (up[2].to(torch.bfloat16).contiguous(),)
    down = tuple(t.contiguous() for t in down[:2]) + (down[2].to(torch.bfloat16).contiguous(),)
    out = torch.zeros(T, D, dtype=torch.float32)
    _library().moe_decode(
        x.data_ptr(), T, D, idx.data_ptr(), w.data_ptr(), idx.shape[1], E, two_i // 2,
        *(t.data_ptr() for t in up), *(t.data_ptr() for t in down), alpha, limit, out.data_ptr(),
    )  # fmt: skip
    return out
