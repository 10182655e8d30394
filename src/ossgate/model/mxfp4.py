"""MXFP4 (OCP Microscaling, FP4 E2M1 elements) as gpt-oss stores its expert weights.

Layout: weights are split into blocks of 32 values along the input dimension. Each block is 16 bytes
(two 4-bit codes a byte, low nibble first) plus one E8M0 scale byte: value = E2M1[code] * 2**(scale-127).
Spec: https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf
"""

from __future__ import annotations

import torch

BLOCK = 32  # values per scale
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
SCALE_BIAS = 127


def lut(dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.tensor(E2M1, dtype=dtype, device=device)


def dequantize(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """blocks (..., G, 16) uint8 and scales (..., G) uint8 -> (..., G*32) in `dtype`."""
    assert blocks.shape[:-1] == scales.shape, f"blocks {tuple(blocks.shape)} do not match scales {tuple(scales.shape)}"
    table = lut(dtype, blocks.device)
    lo = table[(blocks & 0x0F).long()]
    hi = table[(blocks >> 4).long()]
    values = torch.stack((lo, hi), dim=-1).flatten(-2)  # (..., G, 32): low nibble first
    exponent = scales.to(torch.int32) - SCALE_BIAS
    values = torch.ldexp(values.float(), exponent.unsqueeze(-1).float()).to(dtype)
    return values.flatten(-2)


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., K) float -> blocks (..., K/32, 16) uint8, scales (..., K/32) uint8; round to nearest E2M1.

    The scale puts each block's largest magnitude at or below 6 (E2M1's maximum), as the OCP spec's
    reference quantiser does: shared exponent = floor(log2(amax)) - 2.
    """
    *lead, k = weight.shape
    if k % BLOCK:
        raise ValueError(f"input dimension {k} is not a multiple of the MXFP4 block size {BLOCK}")
    w = weight.float().reshape(*lead, k // BLOCK, BLOCK)
    amax = w.abs().amax(dim=-1)
    exponent = torch.where(
        amax > 0, torch.floor(torch.log2(amax.clamp_min(2.0**-126))) - 2, torch.full_like(amax, -127.0)
    )
    exponent = exponent.clamp(-SCALE_BIAS, 127)
    scaled = w / torch.pow(2.0, exponent).unsqueeze(-1)
    table = lut(torch.float32, weight.device)[:8]
    # nearest of the 8 magnitudes; sign goes into bit 3
    codes = (scaled.abs().unsqueeze(-1) - table).abs().argmin(dim=-1).to(torch.uint8)
    codes = codes | ((scaled < 0).to(torch.uint8) << 3)
    codes = torch.where(codes == 8, torch.zeros_like(codes), codes)  # -0 is stored as +0
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed.contiguous(), (exponent + SCALE_BIAS).to(torch.uint8).contiguous()
