"""The native bf16 decode GEMV against PyTorch's linear."""

import pytest
import torch

from ossgate.model.kernels import linear_cpu
from ossgate.model.transformer import Linear

needs_native = pytest.mark.skipif(not linear_cpu.available(), reason="CPU lacks AVX-512 BF16 or no g++")


@needs_native
# n: both vdpbf16ps row tilings (4 rows to 4 tokens, 3 past), a second pass over the weights; AMX's token groups
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 16, 17, 32])
@pytest.mark.parametrize("shape", [(7, 64), (129, 2880)])  # row tails, a gpt-oss width
def test_linear_matches_pytorch(n, shape):
    O, K = shape
    g = torch.Generator().manual_seed(n * 1000 + O)
    x, w, b = torch.randn(n, K, generator=g), torch.randn(O, K, generator=g), torch.randn(O, generator=g)
    ref = x.bfloat16().float() @ w.bfloat16().float().T + b.bfloat16().float()
    out = linear_cpu.linear(x.bfloat16(), w.bfloat16(), b.bfloat16())
    assert out.shape == (n, O) and out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 1e-2 * ref.abs().max()  # bf16 output rounding


@needs_native
def test_model_linear_uses_the_kernel_only_where_it_applies():
    layer = Linear(64, 16).bfloat16()
    x = torch.randn(linear_cpu.max_tokens(), 64).bfloat16()
    with torch.no_grad():
        assert linear_cpu.applies(x, layer.weight)
        assert torch.allclose(layer(x).float(), torch.nn.functional.linear(x, layer.weight, layer.bias).float(),
                              rtol=2e-2, atol=2e-2)  # fmt: skip
        assert not linear_cpu.applies(torch.randn(linear_cpu.max_tokens() + 1, 64).bfloat16(), layer.weight)
    # training: autograd must see PyTorch's op
    assert not linear_cpu.applies(x, layer.weight)
    layer(x).float().sum().backward()
    assert layer.weight.grad is not None


@pytest.mark.parametrize("n", [1, 5])
def test_logits_skip_all_zero_unembedding_rows_exactly(n):
    from ossgate.model.config import shape_config
    from ossgate.model.transformer import Transformer

    model = Transformer(shape_config("tiny")).bfloat16()
    g = torch.Generator().manual_seed(n)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        live = torch.randperm(model.config.vocab_size, generator=g)[:300]
        model.lm_head.weight[live] = torch.randn(300, model.config.hidden_size, generator=g).bfloat16()
        hidden = torch.randn(n, model.config.hidden_size, generator=g).bfloat16()
        full = torch.nn.functional.linear(hidden, model.lm_head.weight)
        logits = model.logits(hidden)
        assert model._live_rows() is not None  # the sparse path was taken
        dead = torch.ones(model.config.vocab_size, dtype=torch.bool)
        dead[live] = False
        assert torch.all(logits[:, dead] == 0)
        assert torch.allclose(logits[:, live].float(), full[:, live].float(), rtol=1e-2, atol=1e-2)
        model.lm_head.weight.fill_(0.5)  # a weight update is seen: every row is live again
        assert model._live_rows() is None
        assert torch.equal(model.logits(hidden), model.lm_head(hidden))
