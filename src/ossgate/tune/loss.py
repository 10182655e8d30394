"""Cross-entropy over the full gpt-oss vocabulary without materialising 201088-wide logits.

Tokens that never occur in the data keep exactly zero embedding and unembedding rows, so their logits
are exactly 0. The full softmax's partition function is then

    Z = sum_{used} exp(logit_u) + n_unused * exp(0)

so log Z = logsumexp([logits_used, log(n_unused)]) and the loss is exact while only the used columns
(a few thousand) are computed.
"""

from __future__ import annotations

import math

import torch


def exact_cross_entropy(
    logits_used: torch.Tensor, targets: torch.Tensor, n_unused: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """logits_used (N, U) over the used ids, targets (N,) in 0..U-1 -> mean loss equal to full-vocabulary CE.

    `weights` (N,) makes it the weighted mean (a target of weight 3 counts as three of weight 1).
    """
    logits = logits_used.float()
    if n_unused > 0:
        pad = torch.full((logits.shape[0], 1), math.log(n_unused), dtype=logits.dtype, device=logits.device)
        logits = torch.cat((logits, pad), dim=-1)  # (N, U+1): the unused ids folded into one column
    log_z = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(1, targets[:, None]).squeeze(1)
    loss = log_z - picked
    if weights is None:
        return loss.mean()
    return (loss * weights).sum() / weights.sum()
