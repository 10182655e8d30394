"""The nano training run itself (a few steps): tied embeddings stay tied through training, checkpoints and
export, and a resumed run keeps the tying its checkpoint was trained with."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from ossgate.nano.artifact import COMPACT_FILE, export_compact
from ossgate.nano.train import RunConfig, load_trained, train


def _run(**kw) -> RunConfig:
    return RunConfig(seed=5, samples=24, batch_tokens=1024, steps=2, warmup=1, checkpoint_every=1, **kw)


def test_tied_run_trains_saves_and_exports_tied(tmp_path):
    model, vocab, history = train(_run(tie_embeddings=True), tmp_path / "run", show_progress=False)
    assert len(history) == 2
    assert model.lm_head.weight is model.model.embed_tokens.weight
    loaded, _, _ = load_trained(tmp_path / "run")
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    torch.testing.assert_close(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)
    export_compact(loaded, vocab, tmp_path / "ship")
    tensors = load_file(str(tmp_path / "ship" / COMPACT_FILE))
    # gpt-oss's layout has both tensors; a tied run writes them equal
    assert torch.equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"])
    assert tensors["lm_head.weight"].abs().sum() > 0


def test_resumed_run_keeps_its_tying(tmp_path):
    model, _, _ = train(_run(tie_embeddings=True), tmp_path, show_progress=False)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    resumed = _run()  # the default unties; the run directory's checkpoint says otherwise
    resumed.steps = 3
    model, _, history = train(resumed, tmp_path, show_progress=False)
    assert len(history) == 3 and model.lm_head.weight is model.model.embed_tokens.weight


def test_untied_run_trains_two_tensors(tmp_path):
    model, _, _ = train(_run(), tmp_path, show_progress=False)
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_attention_width_is_kept_by_the_checkpoint(tmp_path):
    train(_run(attention_heads=8, kv_heads=4), tmp_path, show_progress=False)
    loaded, _, _ = load_trained(tmp_path)
    assert (loaded.config.num_attention_heads, loaded.config.num_key_value_heads) == (8, 4)
    resumed = _run()  # default width; the checkpoint's wins
    resumed.steps = 3
    model, _, history = train(resumed, tmp_path, show_progress=False)
    assert len(history) == 3 and model.config.num_attention_heads == 8
