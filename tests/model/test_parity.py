"""Numerical parity with Hugging Face transformers' GptOssForCausalLM on the same files."""

import pytest
import torch

from ossgate.engine.generate import generate

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_model(tiny_checkpoint):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    return model.eval()


def test_logits_match_transformers_beyond_the_sliding_window(tiny_model, hf_model):
    window = tiny_model.config.sliding_window
    prompt = torch.randint(0, 200000, (6 * window,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = tiny_model.logits(tiny_model(prompt, torch.arange(len(prompt))))
        theirs = hf_model(prompt[None]).logits[0]
    delta = (ours - theirs).abs().max().item()
    print(f"\nmax |Δlogit| vs transformers over {len(prompt)} tokens (window {window}): {delta:.3e}")
    assert delta < 1e-4
    # the comparison has teeth: the logits differ from token to token
    assert (ours[1:] - ours[:-1]).abs().max() > 1e-2


def test_greedy_continuation_matches_transformers(tiny_model, hf_model):
    prompt = list(range(1000, 1000 + 3 * tiny_model.config.sliding_window))
    ours = generate(tiny_model, prompt, max_tokens=24)
    with torch.no_grad():
        theirs = hf_model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False, eos_token_id=None)
    assert ours == theirs[0, len(prompt) :].tolist()


def test_original_layout_loads_to_the_same_logits(tiny_checkpoint, tiny_model, tmp_path):
    from ossgate.model.checkpoint import load_model
    from ossgate.model.writer import to_original

    to_original(tiny_checkpoint, tmp_path / "original")
    original = load_model(tmp_path, dtype=torch.float32, show_progress=False)
    tokens = torch.arange(100, 140)
    with torch.no_grad():
        a = tiny_model.logits(tiny_model(tokens, torch.arange(40)))
        b = original.logits(original(tokens, torch.arange(40)))
    assert torch.equal(a, b)


def test_dense_checkpoint_and_its_mxfp4_twin_give_close_logits(tmp_path):
    from ossgate.model.checkpoint import load_model
    from ossgate.model.config import shape_config
    from ossgate.model.writer import new_checkpoint, quantize_checkpoint

    new_checkpoint(shape_config("tiny", quantized=False), tmp_path / "dense", seed=3)
    quantize_checkpoint(tmp_path / "dense", tmp_path / "mxfp4")
    dense = load_model(tmp_path / "dense", dtype=torch.float32, show_progress=False)
    packed = load_model(tmp_path / "mxfp4", dtype=torch.float32, show_progress=False)
    assert not dense.config.quantized and packed.config.quantized
    tokens = torch.arange(500, 532)
    with torch.no_grad():
        a = dense.logits(dense(tokens, torch.arange(32)))
        b = packed.logits(packed(tokens, torch.arange(32)))
    rel = ((a - b).norm() / a.norm()).item()
    print(f"\nrelative logit error of the MXFP4 twin: {rel:.4f}")
    assert 0 < rel < 0.1


def test_written_tokenizer_json_matches_harmony(tiny_checkpoint):
    from ossgate import harmony

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_checkpoint)
    text = "Hello world! ¿Qué tal? 12345 naïve 東京 <|start|>user<|message|>hi<|end|>"
    assert tokenizer.encode(text) == harmony.encoding().encode(text, allowed_special="all")
    assert len(tokenizer) == 201088
