"""The native MXFP4 expert kernels against plain dequantise-then-multiply in PyTorch."""

import pytest
import torch

from ossgate.model import mxfp4
from ossgate.model.config import shape_config
from ossgate.model.kernels import mxfp4_cpu
from ossgate.model.transformer import Experts, swiglu

needs_native = pytest.mark.skipif(not mxfp4_cpu.available(), reason="CPU lacks AVX-512 BF16 or no g++")


def q8(x: torch.Tensor) -> torch.Tensor:
    """x rounded as the fused kernel reads it: int8 per 32-block, scale max|x| / 127 (Q8_0)."""
    n, K = x.shape
    blocks = x.float().view(n, K // 32, 32)
    amax = blocks.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, torch.full_like(amax, 127) / amax, 0)  # a true division, as the kernel does
    return (torch.round(blocks * inv) * (amax / 127)).view(n, K)


def reference(x, blocks, scales, bias=None, fused=True):
    """fp64 x @ W^T + bias, with x rounded through Q8_0 on the fused path."""
    x = q8(x) if fused else x.float()
    y = x.double() @ mxfp4.dequantize(blocks, scales, torch.float32).double().T
    return y if bias is None else y + bias.double()


def packed(O: int, K: int, seed: int, scale_range=(118, 124)):
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 256, (O, K // 32, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(*scale_range, (O, K // 32), dtype=torch.uint8, generator=g)
    return blocks, scales


@needs_native
def test_native_dequantize_is_bit_exact():
    blocks, scales = packed(33, 192, 0, scale_range=(2, 253))  # the whole exact range, an odd row count
    assert torch.equal(mxfp4_cpu.dequantize(blocks, scales), mxfp4.dequantize(blocks, scales, torch.bfloat16))


@needs_native
@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 8, 9, 16, 20])  # fused (one or two passes of 8 tokens), dequantised
def test_matmul_matches_dequantize_then_multiply(n):
    blocks, scales = packed(97, 256, n)
    g = torch.Generator().manual_seed(100 + n)
    x = torch.randn(n, 256, generator=g).bfloat16()
    bias = torch.randn(97, generator=g).bfloat16()
    fused = n <= mxfp4_cpu.FUSED_MAX_TOKENS
    ref = reference(x, blocks, scales, bias, fused)
    out = mxfp4_cpu.matmul(x, blocks, scales, bias)
    assert out.shape == (n, 97) and out.dtype == torch.float32
    tol = 1e-5 if fused else 2e-2  # exact integer dot products in the kernel vs a bf16 matmul output
    assert (out.double() - ref).abs().max() <= tol * ref.abs().max()
    exact = reference(x, blocks, scales, bias, fused=False)
    assert (out.double() - exact).abs().max() <= 2e-2 * exact.abs().max()  # what Q8_0 costs


@needs_native
@pytest.mark.parametrize("n", [1, 5, 12])
@pytest.mark.parametrize("K", [2880, 160, 224])  # 90, 5, 7 blocks: the kernel reads 4 at a time (tails 2, 1, 3)
def test_matmul_at_gpt_oss_and_nano_widths(n, K):
    blocks, scales = packed(40, K, n)
    x = torch.randn(n, K, generator=torch.Generator().manual_seed(7)).bfloat16()
    fused = n <= mxfp4_cpu.FUSED_MAX_TOKENS
    ref = reference(x, blocks, scales, fused=fused)
    out = mxfp4_cpu.matmul(x, blocks, scales)
    tol = 1e-5 if fused else 2e-2
    assert (out.double() - ref).abs().max() <= tol * ref.abs().max()
    assert torch.equal(mxfp4_cpu.dequantize(blocks, scales), mxfp4.dequantize(blocks, scales, torch.bfloat16))


@needs_native
def test_swiglu_and_scatter_match_pytorch():
    h = torch.randn(6, 128, generator=torch.Generator().manual_seed(1)) * 5  # values beyond the clamp limit
    assert torch.equal(mxfp4_cpu.swiglu(h, 1.702, 7.0), swiglu(h, 1.702, 7.0).bfloat16())
    out, y = torch.zeros(4, 16), torch.randn(3, 16)
    mxfp4_cpu.scatter_add(out, torch.tensor([3, 0, 1]), y, torch.tensor([0.5, 2.0, -1.0]))
    assert torch.allclose(out, torch.stack([2 * y[1], -y[2], torch.zeros(16), 0.5 * y[0]]))


def _experts(scale_range=(118, 124)) -> Experts:
    config = shape_config("tiny", hidden_size=128, intermediate_size=64, num_local_experts=6, num_experts_per_tok=3)
    experts = Experts(config)
    g = torch.Generator().manual_seed(7)
    for name, buf in experts.named_buffers():
        lo, hi = (0, 256) if name.endswith("blocks") else scale_range
        buf.copy_(torch.randint(lo, hi, buf.shape, dtype=torch.uint8, generator=g))
    for p in experts.parameters():
        p.data = (0.1 * torch.randn(p.shape, generator=g)).bfloat16()
    return experts


def _reference(experts: Experts, x, idx, w):
    """Every token through its k experts in fp32, weights dequantised with the PyTorch code."""
    out = torch.zeros(x.shape, dtype=torch.float32)
    for t in range(x.shape[0]):
        for e, weight in zip(idx[t].tolist(), w[t].float(), strict=True):
            w1, w2 = experts.weights(e, torch.float32)
            h = swiglu(x[t].float() @ w1 + experts.gate_up_proj_bias[e].float(), experts.alpha, experts.limit)
            out[t] += weight * (h @ w2 + experts.down_proj_bias[e].float())
    return out


@pytest.mark.parametrize("T", [1, 5, 40])  # decode, a small batch, a prefill chunk (dequantised path)
def test_experts_forward_matches_the_fp32_reference(T):
    experts = _experts()
    g = torch.Generator().manual_seed(T)
    x = torch.randn(T, 128, generator=g).bfloat16()
    idx = torch.stack([torch.randperm(6, generator=g)[:3] for _ in range(T)])
    w = torch.softmax(torch.randn(T, 3, generator=g), -1).bfloat16()
    out = experts(x, idx, w)
    ref = _reference(experts, x, idx, w)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 2e-2 * ref.abs().max()  # bf16 activations between the matmuls
    assert experts.native() == mxfp4_cpu.available()


@needs_native
@pytest.mark.parametrize(
    ("D", "I", "threads"),
    [
        (128, 96, 2),  # small: one thread, expert after expert
        (160, 96, 2),  # an unpaired last block, as in gpt-oss-nano
        (512, 256, 1),  # large enough for a parallel region: one thread...
        (512, 256, 2),  # ...two threads, each taking whole experts (>= 2 routed experts a thread)
    ],
)
def test_fused_layer_equals_expert_by_expert(D, I, threads):
    config = shape_config("tiny", hidden_size=D, intermediate_size=I, num_local_experts=6, num_experts_per_tok=3)
    experts = Experts(config)
    g = torch.Generator().manual_seed(D)
    for name, buf in experts.named_buffers():
        lo, hi = (0, 256) if name.endswith("blocks") else (118, 124)
        buf.copy_(torch.randint(lo, hi, buf.shape, dtype=torch.uint8, generator=g))
    for p in experts.parameters():
        p.data = (0.1 * torch.randn(p.shape, generator=g)).bfloat16()
    x = torch.randn(5, D, generator=g).bfloat16()
    idx = torch.stack([torch.randperm(6, generator=g)[:3] for _ in range(5)])
    w = torch.softmax(torch.randn(5, 3, generator=g), -1).bfloat16()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fused = experts(x, idx, w)  # every expert has <= 5 tokens: the one-call layer
    finally:
        torch.set_num_threads(before)
    by_expert = torch.zeros(5, D)
    for e in range(6):
        tok, slot = (idx == e).nonzero().unbind(1)
        if len(tok):
            mxfp4_cpu.scatter_add(by_expert, tok, experts.expert(e, x[tok]), w[tok, slot].float())
    # threads add their experts in another order: equal up to fp32 rounding, then bf16
    assert torch.allclose(fused.float(), by_expert.bfloat16().float(), rtol=1e-2, atol=1e-3)
    if threads == 1:
        assert torch.equal(fused, by_expert.bfloat16())


def test_scales_outside_the_exact_range_fall_back_to_pytorch():
    experts = _experts(scale_range=(1, 3))  # scale byte 1: 0.5 * 2**-126 is subnormal, the exponent trick is not exact
    assert not experts.native()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 128, generator=g).bfloat16()
    idx, w = torch.tensor([[0, 1, 2], [3, 4, 5]]), torch.full((2, 3), 1 / 3).bfloat16()
    ref = _reference(experts, x, idx, w)
    assert (experts(x, idx, w).float() - ref).abs().max() <= 2e-2 * ref.abs().max()


@needs_native
def test_bf16_model_logits_match_the_pytorch_path(tiny_checkpoint, monkeypatch):
    from ossgate.model.checkpoint import load_model

    tokens = torch.arange(1000, 1040)
    with torch.no_grad():
        model = load_model(tiny_checkpoint, show_progress=False)  # bf16: native experts
        assert model.model.layers[0].mlp.experts.native()
        native = model.logits(model(tokens, torch.arange(40))).float()
        monkeypatch.setenv("OSSGATE_NATIVE_KERNELS", "0")
        mxfp4_cpu._library.cache_clear()
        try:
            assert not mxfp4_cpu.available()
            model = load_model(tiny_checkpoint, show_progress=False)
            assert not model.model.layers[0].mlp.experts.native()
            plain = model.logits(model(tokens, torch.arange(40))).float()
        finally:
            monkeypatch.delenv("OSSGATE_NATIVE_KERNELS")
            mxfp4_cpu._library.cache_clear()
    cos = torch.nn.functional.cosine_similarity(native, plain, dim=-1)
    assert cos.min() > 0.999
    assert (native.argmax(-1) == plain.argmax(-1)).float().mean() > 0.9
