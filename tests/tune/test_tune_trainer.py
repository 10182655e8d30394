"""The trainer on a tiny gpt-oss: packing is per sequence, a few steps make the loss fall, checkpoints resume."""

from __future__ import annotations

import torch

from ossgate.model.config import shape_config
from ossgate.model.transformer import Transformer
from ossgate.nano import data
from ossgate.tune.batches import Example, batches, pack
from ossgate.tune.trainer import TrainConfig, Trainer, init_weights, sequence_loss
from ossgate.tune.vocab import CompactVocab


def _tiny_setup(n: int = 24):
    samples = data.dataset(3, n, kind="arithmetic")
    encoded = [data.encode(s) for s in samples]
    vocab = CompactVocab({t for toks, _ in encoded for t in toks}, 201088)
    examples = [Example(vocab.compact(torch.tensor(t)).tolist(), m) for t, m in encoded]
    config = shape_config("tiny", layers=2, vocab_size=len(vocab), quantized=False)
    model = Transformer(config)
    init_weights(model, seed=0)
    return model, vocab, examples


def test_pack_restarts_positions_and_keeps_targets_inside_each_sequence():
    a, b = Example([1, 2, 3], [False, True, True]), Example([7, 8], [False, True])
    batch = pack([a, b])
    assert batch.tokens.tolist() == [1, 2, 7]
    assert batch.positions.tolist() == [0, 1, 0]
    assert batch.seq_lens == [2, 1]
    assert batch.targets.tolist() == [2, 3, 8]
    assert batch.weights.tolist() == [1.0, 1.0, 1.0]


def test_a_heavier_target_counts_as_that_many_ordinary_ones():
    model, vocab, examples = _tiny_setup(2)
    model.eval()
    ex = examples[0]
    first = next(i for i, m in enumerate(ex.mask) if m)
    heavy = Example(ex.tokens, [3.0 if i == first else float(m) for i, m in enumerate(ex.mask)])
    only_first = Example(ex.tokens, [i == first for i in range(len(ex.tokens))])
    with torch.no_grad():
        weighted = sequence_loss(model, pack([heavy]), vocab.n_unused)
        repeated = sequence_loss(model, pack([ex, only_first, only_first]), vocab.n_unused)
        plain = sequence_loss(model, pack([ex]), vocab.n_unused)
    torch.testing.assert_close(weighted, repeated, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(weighted, plain)


def test_packed_loss_equals_per_sequence_loss():
    model, vocab, examples = _tiny_setup(4)
    model.eval()
    with torch.no_grad():
        packed = sequence_loss(model, pack(examples[:2]), vocab.n_unused)
        one = [sequence_loss(model, pack([ex]), vocab.n_unused) for ex in examples[:2]]
    n = [sum(ex.mask[1:]) for ex in examples[:2]]
    torch.testing.assert_close(packed, (one[0] * n[0] + one[1] * n[1]) / sum(n), rtol=1e-4, atol=1e-4)


def test_a_few_steps_make_the_loss_fall(tmp_path):
    torch.manual_seed(0)
    model, vocab, examples = _tiny_setup()
    config = TrainConfig(steps=30, lr=1e-2, warmup=3, checkpoint_every=0)
    trainer = Trainer(model, config, n_unused=vocab.n_unused, out_dir=tmp_path)
    history = trainer.fit(batches(examples, 1024, seed=0), progress=False)
    first = sum(r["loss"] for r in history[:3]) / 3
    last = sum(r["loss"] for r in history[-3:]) / 3
    assert last < 0.6 * first, f"loss went from {first:.3f} to only {last:.3f}"
    # the run directory can be resumed: same weights, same step
    fresh, _, _ = _tiny_setup()
    resumed = Trainer(fresh, config, n_unused=vocab.n_unused, out_dir=tmp_path)
    assert resumed.resume() and resumed.step == 30
    for (name, p), q in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
