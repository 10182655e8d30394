"""Native kernels for the model's hot loops, each with a pure-PyTorch fallback beside its caller."""
