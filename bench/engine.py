"""Engine benchmark: ossgate vs transformers, the gpt-oss reference (and llama.cpp if installed).

Writes the random checkpoints it needs (reused across runs; the 20b-shaped ones under /tmp, ~17 GB),
runs `ossgate bench`'s measurements on each shape, one engine at a time, and writes
bench/results/engine-<shape>.md.

    python bench/engine.py                       # tiny, 20b --layers 4, full 20b
    python bench/engine.py --shapes tiny,20b-l4 --threads 1

Full 20b: transformers and the reference dequantise the experts to bf16 (~42 GB), so on a 24 GB
machine only ossgate (and llama.cpp, given --gguf) run there.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ossgate.engine.bench import report
from ossgate.model.checkpoint import locate
from ossgate.model.config import shape_config
from ossgate.model.writer import new_checkpoint

ROOT = Path(os.environ.get("OSSGATE_BENCH_DIR", "/tmp"))
SHAPES = {  # name -> (shape, layers, directory, peers)
    "tiny": ("tiny", None, ROOT / "ckpt-tiny", "transformers,reference"),
    "20b-l4": ("20b", 4, ROOT / "ckpt-20b-l4", "transformers,reference"),
    "20b": ("20b", None, ROOT / "ckpt-20b", ""),
}
OUT = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="tiny,20b-l4,20b")
    ap.add_argument("--threads", type=int, default=0, help="threads for every engine (0 = PyTorch's default)")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--gguf", type=Path, default=None, help="GGUF of the full 20b checkpoint, for llama.cpp")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.shapes.split(","):
        shape, layers, path, peers = SHAPES[name]
        if not (path / "config.json").exists():
            new_checkpoint(shape_config(shape, layers=layers), path, seed=0)
        peers = peers.split(",") if peers else []
        gguf = args.gguf if name == "20b" else None
        if gguf:
            peers.append("llama.cpp")
        started = time.strftime("%Y-%m-%d %H:%M")
        md = report(path, locate(path).config, peers, None, gguf, args.prompt, args.decode, [8, 32], 8192, args.threads)
        section = f"## {name} — {started}, threads={args.threads or 'default'}\n\n{md}\n"
        print(section, flush=True)
        (OUT / f"engine-{name}.md").write_text(section)


if __name__ == "__main__":
    main()
