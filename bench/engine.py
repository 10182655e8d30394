"""Engine benchmark: ossgate vs transformers, the gpt-oss reference (and llama.cpp if installed).

Writes the random checkpoints it needs (reused across runs; the 20b-shaped ones under /tmp, ~17 GB),
runs `ossgate bench`'s measurements on each shape, one engine at a time, and writes
bench/results/engine-<shape>.md.

    python bench/engine.py                       # tiny, 20b --layers 4, full 20b
    python bench/engine.py --shapes tiny,20b-l4 --threads 1

Full 20b: transformers and the reference dequantise the experts to bf16 (~42 GB), so on a 24 GB
machine only ossgate (and llama.cpp) run there.

llama.cpp joins every shape when llama-cpp-python is installed and --llama-cpp names a llama.cpp
source tree: its own converter (convert_hf_to_gguf.py, default --outtype: MXFP4 experts, bf16 rest)
makes <checkpoint>.gguf once. The sdist of llama-cpp-python carries both:

    pip install llama-cpp-python==0.3.36        # builds llama.cpp for this CPU (~17 min on 2 cores)
    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/llama_src
    tar xzf /tmp/llama_src/llama_cpp_python-0.3.36.tar.gz -C /tmp/llama_src
    pip install /tmp/llama_src/llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py
    python bench/engine.py --llama-cpp /tmp/llama_src/llama_cpp_python-0.3.36/vendor/llama.cpp
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
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


def to_gguf(checkpoint: Path, llama_cpp_tree: Path) -> Path:
    """<checkpoint>.gguf, made once by llama.cpp's own converter."""
    gguf = checkpoint.with_suffix(".gguf")
    if not gguf.exists():
        converter = llama_cpp_tree / "convert_hf_to_gguf.py"
        tmp = gguf.with_suffix(".gguf.tmp")
        subprocess.run([sys.executable, str(converter), str(checkpoint), "--outfile", str(tmp)], check=True)
        tmp.replace(gguf)
    return gguf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="tiny,20b-l4,20b")
    ap.add_argument("--threads", type=int, default=0, help="threads for every engine (0 = PyTorch's default)")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--llama-cpp", type=Path, default=None, help="llama.cpp source tree (converter)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of all engines, alternated; best of each reported")
    args = ap.parse_args()
    with_llama = args.llama_cpp is not None and importlib.util.find_spec("llama_cpp") is not None
    if args.llama_cpp is not None and not with_llama:
        sys.exit("--llama-cpp needs llama-cpp-python installed (see this script's docstring)")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.shapes.split(","):
        shape, layers, path, peers = SHAPES[name]
        if not (path / "config.json").exists():
            new_checkpoint(shape_config(shape, layers=layers), path, seed=0)
        peers = peers.split(",") if peers else []
        gguf = to_gguf(path, args.llama_cpp) if with_llama else None
        if gguf:
            peers.append("llama.cpp")
        started = time.strftime("%Y-%m-%d %H:%M")
        md = report(path, locate(path).config, peers, None, gguf, args.prompt, args.decode, [8, 32], 8192, args.threads,
                    args.repeat)  # fmt: skip
        section = f"## {name} — {started}, threads={args.threads or 'default'}\n\n{md}\n"
        print(section, flush=True)
        (OUT / f"engine-{name}.md").write_text(section)


if __name__ == "__main__":
    main()
