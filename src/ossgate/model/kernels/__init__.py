"""Native kernels for the model's hot loops, each with a pure-PyTorch fallback beside its caller."""

import torch


def tracks_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records ops on these tensors: the native kernels have no backward, so they must not run."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
