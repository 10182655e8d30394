import pytest
import torch

from ossgate.model import mxfp4


def test_dequantize_hand_computed_table():
    # byte 0x21: low nibble 1 (0.5) first, high nibble 2 (1.0); 0xF9: low 9 (-0.5), high 15 (-6.0)
    blocks = torch.zeros(1, 16, dtype=torch.uint8)
    blocks[0, 0], blocks[0, 1], blocks[0, 2] = 0x21, 0xF9, 0x7E
    scales = torch.tensor([128], dtype=torch.uint8)  # 2**(128-127) = 2
    values = mxfp4.dequantize(blocks, scales, torch.float32)
    assert values.shape == (32,)
    assert values[:6].tolist() == [1.0, 2.0, -1.0, -12.0, -8.0, 12.0]  # 0x7E: low 14 (-4), high 7 (6)
    assert values[6:].abs().sum() == 0


def test_every_code_decodes_to_e2m1():
    codes = torch.arange(16, dtype=torch.uint8)
    blocks = (codes[0::2] | (codes[1::2] << 4)).repeat(2).view(1, 16)
    values = mxfp4.dequantize(blocks, torch.tensor([127], dtype=torch.uint8), torch.float32)
    assert values[:16].tolist() == [abs(v) if v == 0 else v for v in mxfp4.E2M1]


def test_quantize_round_trips_representable_values():
    scale = 2.0**-3
    grid = torch.tensor(mxfp4.E2M1[:8] + mxfp4.E2M1[9:] + (6.0,), dtype=torch.float32)  # 16 values incl. -6..6
    w = (grid.repeat(4)[:64] * scale).view(2, 32)
    blocks, scales = mxfp4.quantize(w)
    assert blocks.shape == (2, 1, 16) and scales.shape == (2, 1)
    assert torch.equal(mxfp4.dequantize(blocks, scales, torch.float32), w)


def test_quantize_error_is_bounded():
    w = torch.randn(8, 256)
    blocks, scales = mxfp4.quantize(w)
    back = mxfp4.dequantize(blocks, scales, torch.float32)
    rel = (back - w).norm() / w.norm()
    assert rel < 0.2, f"relative error {rel:.3f}"


def test_quantize_rejects_ragged_blocks():
    with pytest.raises(ValueError, match="multiple of the MXFP4 block size"):
        mxfp4.quantize(torch.randn(4, 40))
