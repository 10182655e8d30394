"""The native decode attention against the PyTorch `sdpa_with_sinks`."""

import pytest
import torch

from ossgate.model.kernels import attention_cpu
from ossgate.model.transformer import sdpa_with_sinks

needs_native = pytest.mark.skipif(attention_cpu._library() is None, reason="CPU lacks AVX-512 BF16 or no g++")


@needs_native
@pytest.mark.parametrize("window", [None, 8])
@pytest.mark.parametrize(("H", "G", "d"), [(8, 2, 64), (4, 2, 32), (4, 2, 16)])  # gpt-oss, nano, tiny heads
def test_decode_matches_pytorch(window, H, G, d):
    g = torch.Generator().manual_seed(H + d + (window or 0))
    S = 20
    q = torch.randn(1, H, d, generator=g).bfloat16()
    k, v = torch.randn(S, G, d, generator=g).bfloat16(), torch.randn(S, G, d, generator=g).bfloat16()
    k_pos = torch.arange(S)
    k_pos[[3, 11]] = -1  # empty ring slots
    k_pos[5] = 40  # a position after the query's: invisible
    sinks = torch.randn(H, generator=g)
    q_pos = 19
    ref = sdpa_with_sinks(q, k, v, sinks, torch.tensor([q_pos]), k_pos, window)
    assert attention_cpu.applies(q, k)
    out = attention_cpu.decode(q, k, v, sinks, q_pos, k_pos, window)
    assert out.shape == ref.shape == (1, H * d) and out.dtype == torch.bfloat16
    assert (out.float() - ref.float()).abs().max() <= 1e-2 * ref.float().abs().max()


@needs_native
def test_prefill_chunks_and_long_caches_keep_pytorch():
    q = torch.zeros(2, 8, 64).bfloat16()
    assert not attention_cpu.applies(q, torch.zeros(10, 2, 64).bfloat16())
    assert not attention_cpu.applies(q[:1], torch.zeros(attention_cpu.MAX_KEYS + 1, 2, 64).bfloat16())
    assert not attention_cpu.applies(q[:1].float(), torch.zeros(10, 2, 64))


@needs_native
def test_bf16_training_step_keeps_gradients_through_the_native_decode_paths(tiny_checkpoint):
    from ossgate.model.checkpoint import load_model

    model = load_model(tiny_checkpoint, show_progress=False)  # bf16, packed experts: the native paths apply
    for p in model.parameters():
        p.requires_grad_(True)
    tokens, positions = torch.tensor([1000, 2000, 3000]), torch.zeros(3, dtype=torch.long)
    hidden = model(tokens, positions, [1, 1, 1])  # three one-token sequences: decode-shaped
    model.logits(hidden).float().logsumexp(-1).sum().backward()
    layer = model.model.layers[0]
    assert layer.self_attn.q_proj.weight.grad is not None and layer.self_attn.q_proj.weight.grad.abs().sum() > 0
    assert layer.mlp.router.weight.grad is not None and layer.mlp.router.weight.grad.abs().sum() > 0
