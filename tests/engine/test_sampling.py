import torch

from ossgate.engine.sampling import SamplingParams, sample


def test_top_k_and_top_p_restrict_the_choice():
    logits = torch.tensor([5.0, 4.0, 3.0, 0.0, -1.0])
    gen = torch.Generator().manual_seed(0)
    top_k = {sample(logits, SamplingParams(temperature=1.0, top_k=2), gen, []).token for _ in range(200)}
    assert top_k == {0, 1}
    top_p = {sample(logits, SamplingParams(temperature=1.0, top_p=0.5), gen, []).token for _ in range(200)}
    assert top_p == {0}
    min_p = {sample(logits, SamplingParams(temperature=1.0, min_p=0.3), gen, []).token for _ in range(200)}
    assert min_p == {0, 1}


def test_repetition_penalty_discourages_seen_tokens():
    logits = torch.tensor([2.0, 1.9, 0.0])
    assert sample(logits, SamplingParams(temperature=0), None, [0]).token == 0
    assert sample(logits, SamplingParams(temperature=0, repetition_penalty=1.5), None, [0]).token == 1
