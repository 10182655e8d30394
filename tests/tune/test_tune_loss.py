"""The exact-loss trick: zero rows for unused ids give the full-vocabulary cross-entropy from the used columns."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ossgate.tune.loss import exact_cross_entropy
from ossgate.tune.vocab import CompactVocab


def test_exact_loss_equals_full_vocabulary_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    V, D, N = 500, 16, 40
    vocab = CompactVocab(torch.randperm(V, generator=gen)[:37].tolist(), V)
    rows = torch.randn(len(vocab), D, generator=gen)
    full = vocab.expand_rows(rows)  # (V, D), unused rows exactly zero
    hidden = torch.randn(N, D, generator=gen)
    targets_full = torch.tensor(vocab.ids)[torch.randint(0, len(vocab), (N,), generator=gen)]
    reference = F.cross_entropy(hidden @ full.T, targets_full)
    ours = exact_cross_entropy(hidden @ rows.T, vocab.compact(targets_full), vocab.n_unused)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    # and it is not the (wrong) softmax over the used ids alone
    assert not torch.allclose(F.cross_entropy(hidden @ rows.T, vocab.compact(targets_full)), reference)


def test_gradients_match_too():
    gen = torch.Generator().manual_seed(1)
    vocab = CompactVocab([3, 5, 8, 13], 30)
    rows = torch.randn(4, 6, generator=gen, requires_grad=True)
    hidden = torch.randn(9, 6, generator=gen)
    targets = torch.tensor([3, 5, 8, 13, 3, 5, 8, 13, 3])
    exact_cross_entropy(hidden @ rows.T, vocab.compact(targets), vocab.n_unused).backward()
    full = torch.zeros(30, 6)
    full[torch.tensor(vocab.ids)] = rows.detach()
    full.requires_grad_(True)
    F.cross_entropy(hidden @ full.T, targets).backward()
    torch.testing.assert_close(rows.grad, full.grad[torch.tensor(vocab.ids)], rtol=1e-5, atol=1e-6)


def test_compact_vocab_rejects_unknown_ids():
    vocab = CompactVocab([1, 2, 3], 10)
    assert vocab.compact(torch.tensor([3, 1])).tolist() == [2, 0]
    try:
        vocab.compact(torch.tensor([4]))
    except ValueError as e:
        assert "4" in str(e)
    else:
        raise AssertionError("an id outside the compact vocabulary must be refused")


def test_weights_make_it_the_weighted_mean_of_the_per_target_losses():
    gen = torch.Generator().manual_seed(2)
    vocab = CompactVocab([2, 4, 6, 9], 20)
    rows = torch.randn(4, 5, generator=gen)
    hidden = torch.randn(6, 5, generator=gen)
    targets = torch.tensor([2, 4, 6, 9, 2, 4])
    weights = torch.tensor([1.0, 1.0, 5.0, 1.0, 0.5, 1.0])
    full = vocab.expand_rows(rows)
    per_target = F.cross_entropy(hidden @ full.T, targets, reduction="none")
    ours = exact_cross_entropy(hidden @ rows.T, vocab.compact(targets), vocab.n_unused, weights)
    torch.testing.assert_close(ours, (per_target * weights).sum() / weights.sum(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, per_target.mean())
    ones = exact_cross_entropy(hidden @ rows.T, vocab.compact(targets), vocab.n_unused, torch.ones(6))
    torch.testing.assert_close(ones, per_target.mean(), rtol=1e-5, atol=1e-5)
