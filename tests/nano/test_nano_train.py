"""The nano training run itself (a few steps): tied embeddings stay tied through training, checkpoints and
export, a resumed run keeps the tying its checkpoint was trained with, the number tokens' embeddings
keep their place code, and a run can start from a shipped model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from ossgate.nano.artifact import COMPACT_FILE, export_compact
from ossgate.nano.train import RunConfig, architecture, init_number_embeddings, load_trained, network, train


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


def test_number_embeddings_keep_their_place_code_while_the_rest_trains(tmp_path):
    run = _run()
    model, vocab, _ = train(run, tmp_path, show_progress=False)
    start = network(architecture(run.__dict__), len(vocab), run.seed)
    rows = init_number_embeddings(start, vocab, run.seed)
    assert len(rows) > 100  # o200k's one- to three-digit numbers that the data uses
    trained, initial = model.model.embed_tokens.weight, start.model.embed_tokens.weight
    torch.testing.assert_close(trained[rows], initial[rows], rtol=0, atol=0)
    others = sorted(set(range(len(vocab))) - set(rows))
    assert (trained[others] - initial[others]).abs().amax(dim=1).gt(0).sum() > 100


def test_a_run_can_start_from_a_shipped_model(tmp_path):
    """--init: experts, attention and the rows of shared ids start as the shipped file has them."""
    from ossgate.model import mxfp4

    first, vocab_a, _ = train(_run(), tmp_path / "a", show_progress=False)
    export_compact(first, vocab_a, tmp_path / "ship")
    shipped = load_file(str(tmp_path / "ship" / COMPACT_FILE))
    run = _run(init=str(tmp_path / "ship"))
    run.samples = 60  # more conversations: ids the first run never saw
    run.lr, run.steps = 0.0, 1  # one step that moves nothing: the model as it started
    model, vocab, _ = train(run, tmp_path / "b", show_progress=False)
    assert set(vocab_a.ids) < set(vocab.ids)

    name = "model.layers.1.mlp.experts.down_proj"
    dense = mxfp4.dequantize(shipped[name + "_blocks"], shipped[name + "_scales"], torch.float32).transpose(1, 2)
    torch.testing.assert_close(model.state_dict()[name], dense, rtol=0, atol=0)
    q = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(model.state_dict()[q], shipped[q].float(), rtol=0, atol=0)

    numbers = set(init_number_embeddings(network(architecture(run.__dict__), len(vocab), 0), vocab, run.seed))
    row_a = {full: i for i, full in enumerate(vocab_a.ids)}
    shared = [(i, row_a[f]) for i, f in enumerate(vocab.ids) if f in row_a and i not in numbers]
    new, old = torch.tensor(shared).T
    head = model.lm_head.weight.detach()
    torch.testing.assert_close(head[new], shipped["lm_head.weight"][old].float(), rtol=0, atol=0)
    unseen = [i for i, f in enumerate(vocab.ids) if f not in row_a]
    assert head[unseen].abs().sum() > 0  # new ids start from the fresh initialisation, not zero


def test_init_that_is_not_a_shipped_model_is_one_clear_error(tmp_path):
    from typer.testing import CliRunner

    from ossgate.nano.cli import app

    result = CliRunner().invoke(app, ["train", "--init", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "nano.safetensors" in result.output and "Traceback" not in result.output


def test_a_shipped_model_of_another_shape_is_refused(tmp_path):
    from ossgate.errors import CheckpointError

    wide, vocab, _ = train(_run(attention_heads=8, kv_heads=4), tmp_path / "a", show_progress=False)
    export_compact(wide, vocab, tmp_path / "ship")
    with pytest.raises(CheckpointError, match="self_attn.*this run.s is"):
        train(_run(init=str(tmp_path / "ship")), tmp_path / "b", show_progress=False)


def test_worker_processes_tokenise_exactly_as_one_process():
    from ossgate.nano import data
    from ossgate.nano.train import _encode_all

    samples = data.dataset(3, 40)
    assert list(_encode_all(samples, 2)) == list(_encode_all(samples, 1))
    # the name weight reaches the worker processes too
    weighted = list(_encode_all(samples, 2, name_weight=4.0))
    assert weighted == list(_encode_all(samples, 1, name_weight=4.0))
    assert any(4.0 in mask for _, mask in weighted)
    copied = list(_encode_all(samples, 2, number_weight=3.0))
    assert copied == list(_encode_all(samples, 1, number_weight=3.0)) and any(3.0 in mask for _, mask in copied)


def test_factored_number_outputs_stay_factored_through_training_resume_and_export(tmp_path):
    from ossgate.nano.train import number_digits

    run = _run(factored_numbers=True)
    model, vocab, _ = train(run, tmp_path / "run", show_progress=False)
    rows, incidence = number_digits(vocab)

    def nearest_factored(head: torch.Tensor) -> torch.Tensor:
        target = head.detach()[rows]
        return incidence @ torch.linalg.lstsq(incidence, target, driver="gelsd").solution

    def residual(head: torch.Tensor) -> float:
        """How far the number rows are from the nearest sums of 34 code vectors (0: factored)."""
        return float((head.detach()[rows] - nearest_factored(head)).norm() / head.detach()[rows].norm())

    start = network(architecture(run.__dict__), len(vocab), run.seed)
    assert residual(start.lm_head.weight) > 0.5  # free rows are far from factored
    assert residual(model.lm_head.weight) < 1e-4
    trained = model.lm_head.weight.detach().clone()
    assert (trained[rows] - nearest_factored(start.lm_head.weight)).abs().amax() > 1e-4  # the code trained

    resumed = _run()  # the default is free rows; the checkpoint's factoring wins
    resumed.steps = 3
    model, _, history = train(resumed, tmp_path / "run", show_progress=False)
    assert len(history) == 3 and residual(model.lm_head.weight) < 1e-4
    assert not torch.equal(model.lm_head.weight.detach()[rows], trained[rows])

    loaded, _, _ = load_trained(tmp_path / "run")
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in start.named_parameters()]  # plain gpt-oss
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)
    export_compact(loaded, vocab, tmp_path / "ship")
    head = load_file(str(tmp_path / "ship" / COMPACT_FILE))["lm_head.weight"].float()
    torch.testing.assert_close(head, model.lm_head.weight.detach().to(torch.bfloat16).float(), rtol=0, atol=0)


def test_factored_numbers_with_tied_embeddings_is_one_clear_error(tmp_path):
    from typer.testing import CliRunner

    from ossgate.nano.cli import app

    args = ["train", "--factored-numbers", "--tie-embeddings", "--steps", "1", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "untied" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("option", ["--name-weight", "--number-weight"])
def test_a_loss_weight_that_is_not_positive_is_one_clear_error(tmp_path, option):
    from typer.testing import CliRunner

    from ossgate.nano.cli import app

    result = CliRunner().invoke(app, ["train", option, "0", "--steps", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert option in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_a_run_from_a_shipped_model_keeps_its_place_code_under_a_new_seed(tmp_path):
    """The frozen number rows stay the starting model's and new numbers join its code (a new seed redrew it)."""
    from ossgate.nano.train import number_digits

    first, vocab_a, _ = train(_run(factored_numbers=True), tmp_path / "a", show_progress=False)
    export_compact(first, vocab_a, tmp_path / "ship")
    shipped = load_file(str(tmp_path / "ship" / COMPACT_FILE))
    run = _run(init=str(tmp_path / "ship"), factored_numbers=True)
    run.seed, run.samples = 6, 60  # another seed, and numbers the first run never saw
    run.lr, run.steps = 0.0, 1
    model, vocab, _ = train(run, tmp_path / "b", show_progress=False)

    rows, incidence = number_digits(vocab)
    row_a = {full: i for i, full in enumerate(vocab_a.ids)}
    shared = [r for r in rows if vocab.ids[r] in row_a]
    assert 0 < len(shared) < len(rows)
    embed = model.model.embed_tokens.weight.detach()
    before = shipped["model.embed_tokens.weight"][[row_a[vocab.ids[r]] for r in shared]].float()
    torch.testing.assert_close(embed[shared], before, rtol=0, atol=0)
    code = torch.linalg.lstsq(incidence, embed[rows], driver="gelsd").solution
    torch.testing.assert_close(incidence @ code, embed[rows], rtol=0, atol=1e-3)  # bf16 storage, nothing more
    head = model.lm_head.weight.detach()
    old_head = shipped["lm_head.weight"][[row_a[vocab.ids[r]] for r in shared]].float()
    torch.testing.assert_close(head[shared], old_head, rtol=0, atol=1e-3)
