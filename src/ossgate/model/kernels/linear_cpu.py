"""bf16 linear layers for decode steps on x86 CPUs (linear_cpu.cpp, built by `kernels.build`).

A decode step is a few tokens times every weight matrix: the cost is reading the weights, which
PyTorch's CPU bf16 GEMM does far below memory speed at that shape. `linear` takes those steps;
prefill-sized inputs (many tokens per weight read) stay with PyTorch, whose GEMM wins there.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import Tensor

from ossgate.model.kernels import build, tracks_grad
from ossgate.model.kernels.build import I32, I64, PTR

SOURCE = Path(__file__).with_name("linear_cpu.cpp")


@functools.cache
def _library() -> ctypes.CDLL | None:
    lib = build.load(SOURCE, {"bf16_linear": [PTR, I64, PTR, I64, I64, PTR, PTR, I32]})
    if lib is not None:
        lib.bf16_linear_max_tokens.restype = I32
    return lib


def available() -> bool:
    return _library() is not None


@functools.cache
def max_tokens() -> int:
    """Tokens up to which the kernel beats PyTorch's bf16 GEMM (oneDNN) on weights streamed from memory.

    With AMX tiles (the kernel's and oneDNN's): 32 (see `_bench`). Without them, where oneDNN runs on
    AVX-512 BF16 too: 16 (Zen 5, 2 threads, 24 q_proj-sized matrices / the unembedding, GB/s at
    4/8/12/16 tokens: kernel 48.9/37.9/21.9/19.8 and 51.4/41.7/23.5/20.7, PyTorch 27.6/24.0/21.0/19.4
    and 27.9/24.2/22.5/20.8)."""
    return _library().bf16_linear_max_tokens() if available() else 0


def applies(x: Tensor, weight: Tensor) -> bool:
    """Whether `linear(x, weight)` takes the kernel: bf16 on CPU, few tokens, no autograd, K % 32 == 0."""
    return (
        x.dtype == torch.bfloat16
        and weight.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and x.dim() == 2
        and x.shape[0] <= max_tokens()
        and weight.shape[1] % 32 == 0
        and not tracks_grad(x, weight)
        and available()
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (n, K) bf16 @ weight (O, K)^T + bias -> (n, O) bf16, as torch.nn.functional.linear."""
    n, K = x.shape
    O = weight.shape[0]
    x, weight = x.contiguous(), weight.contiguous()
    b = None if bias is None else bias.to(torch.bfloat16).contiguous()
    out = torch.empty(n, O, dtype=torch.bfloat16)
    _library().bf16_linear(
        x.data_ptr(), n, weight.data_ptr(), O, K, None if b is None else b.data_ptr(), out.data_ptr(), 1
    )
    return out


def _bench() -> None:
    """Kernel vs torch at decode shapes of gpt-oss-20b (a side-by-side microbenchmark, not a test)."""
    import time

    shapes = {"q_proj": (4096, 2880), "o_proj": (2880, 4096), "lm_head": (201088, 2880)}
    for name, (O, K) in shapes.items():
        w = torch.randn(O, K).bfloat16()
        for n in (1, 4, 8, 16, 32, 64):
            x = torch.randn(n, K).bfloat16()
            reps = 3 if name == "lm_head" else 30
            row = []
            for fn in (linear, torch.nn.functional.linear):
                fn(x, w)
                t = time.perf_counter()
                for _ in range(reps):
                    fn(x, w)
                row.append((time.perf_counter() - t) / reps)
            gbs = O * K * 2 / row[0] / 1e9
            print(
                f"{name:8s} n={n:3d}  kernel {row[0] * 1e3:8.2f} ms ({gbs:5.1f} GB/s)  torch {row[1] * 1e3:8.2f} ms"
                f"  x{row[1] / row[0]:.2f}"
            )


if __name__ == "__main__":
    with torch.inference_mode():
        _bench()
