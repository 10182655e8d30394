"""`sdpa_with_sinks` (PyTorch's fused attention with the sink as an extra key) against the definition."""

import math

import pytest
import torch

from ossgate.model.transformer import sdpa_with_sinks


def definition(q, k, v, sinks, q_pos, k_pos, window):
    """Softmax over the visible keys' logits plus the head's sink logit; the sink's value is zero."""
    L, H, d = q.shape
    G = k.shape[1]
    k, v = k.float().repeat_interleave(H // G, 1), v.float().repeat_interleave(H // G, 1)  # (S, H, d)
    scores = torch.einsum("lhd,shd->hls", q.float(), k) / math.sqrt(d)
    visible = (k_pos[None, :] <= q_pos[:, None]) & (k_pos[None, :] >= 0)
    if window:
        visible &= q_pos[:, None] - k_pos[None, :] < window
    scores = scores.masked_fill(~visible, float("-inf"))
    sink = sinks.float().view(H, 1, 1).expand(H, L, 1)
    probs = torch.softmax(torch.cat((scores, sink), -1), -1)[..., :-1]
    return torch.einsum("hls,shd->lhd", probs, v).reshape(L, H * d)


@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize(("L", "S"), [(12, 12), (3, 20), (1, 9)])  # a prefill, a chunk after a cache, one token
def test_matches_the_definition(window, L, S):
    g = torch.Generator().manual_seed(L * 100 + S + (window or 0))
    H, G, d = 8, 2, 16
    q = torch.randn(L, H, d, generator=g).bfloat16()
    k, v = torch.randn(S, G, d, generator=g).bfloat16(), torch.randn(S, G, d, generator=g).bfloat16()
    sinks = torch.randn(H, generator=g) * 2
    k_pos = torch.arange(S)
    if S > 10:
        k_pos[[2, 7]] = -1  # empty ring slots
    q_pos = torch.arange(S - L, S)
    out = sdpa_with_sinks(q, k, v, sinks, q_pos, k_pos, window)
    ref = definition(q, k, v, sinks, q_pos, k_pos, window)
    assert out.shape == (L, H * d) and out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 1e-2 * ref.abs().max()


def test_a_query_that_sees_no_key_attends_to_the_sink_only():
    q, k, v = torch.randn(1, 4, 8), torch.randn(3, 2, 8), torch.randn(3, 2, 8)
    out = sdpa_with_sinks(q, k, v, torch.zeros(4), torch.tensor([0]), torch.tensor([-1, 5, 6]), None)
    assert torch.equal(out, torch.zeros(1, 32))


def test_gradients_flow_to_queries_keys_values_and_sinks():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*s, generator=g, requires_grad=True) for s in ((4, 4, 8), (4, 2, 8), (4, 2, 8)))
    sinks = torch.randn(4, generator=g, requires_grad=True)
    pos = torch.arange(4)
    sdpa_with_sinks(q, k, v, sinks, pos, pos, None).square().sum().backward()
    ref_grads = [t.grad.clone() for t in (q, k, v, sinks)]
    for t in (q, k, v, sinks):
        t.grad = None
    definition(q, k, v, sinks, pos, pos, None).square().sum().backward()
    for got, want in zip(ref_grads, (q.grad, k.grad, v.grad, sinks.grad), strict=True):
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
