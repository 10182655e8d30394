"""A Hugging Face `tokenizer.json` for o200k_harmony, so other tools (transformers, llama.cpp's converter)
can read the checkpoints we write. Built once from the offline vocabulary and cached in the data dir.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ossgate.vocab import O200K_FILENAME, data_dir, provision_vocabulary

# tiktoken's o200k_base split pattern (openai_public.py)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
FIRST_SPECIAL, VOCAB_SIZE = 199998, 201088
# Renders conversations as openai-harmony does, for tools that format prompts from the checkpoint
# (transformers' apply_chat_template, llama.cpp's converter, vLLM).
CHAT_TEMPLATE = Path(__file__).with_name("chat_template.jinja")


def special_tokens() -> dict[str, int]:
    """o200k_harmony's special tokens, named by the harmony library itself (ids 199998..201087)."""
    from ossgate.harmony import encoding

    enc = encoding()
    return {enc.decode([i]): i for i in range(FIRST_SPECIAL, VOCAB_SIZE)}


def build_tokenizer_json(path: Path) -> None:
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = provision_vocabulary() / O200K_FILENAME
    tokenizer = TikTokenConverter(
        vocab_file=str(vocab), pattern=O200K_PATTERN, extra_special_tokens=special_tokens()
    ).converted()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tokenizer.save(str(tmp))
    tmp.replace(path)


def cached_tokenizer_json() -> Path:
    path = data_dir() / "tokenizer" / "o200k_harmony" / "tokenizer.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_tokenizer_json(path)
    return path


def write_tokenizer_files(out: Path) -> None:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja into a checkpoint."""
    shutil.copy(cached_tokenizer_json(), out / "tokenizer.json")
    shutil.copy(CHAT_TEMPLATE, out / "chat_template.jinja")
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<|startoftext|>",
                "eos_token": "<|return|>",
                "pad_token": "<|endoftext|>",
                "model_max_length": 131072,
                "clean_up_tokenization_spaces": False,
            },
            indent=2,
        )
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"}, indent=2)
    )
