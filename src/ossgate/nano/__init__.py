"""gpt-oss-nano: a small model in the exact gpt-oss architecture, trained here on synthetic harmony data.

`model_path()` materialises the shipped model (a compact file in the package) into the data dir as a
full Hugging Face-layout checkpoint with MXFP4 experts, loadable by ossgate and by transformers.
"""

from ossgate.nano.artifact import model_path

__all__ = ["model_path"]
