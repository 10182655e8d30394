"""Build and load the project's C++ CPU kernels (compiled with g++ on first use, cached, loaded with ctypes).

A library is keyed by its source, the compiler flags and the CPU's feature flags, so a checkout
copied to another machine rebuilds instead of crashing on a missing instruction. Plain C ABI: no
PyTorch headers, so a build takes seconds, not minutes. `load` returns None (callers use their
PyTorch path) where the CPU lacks AVX-512 BF16/VNNI, no compiler is found, or OSSGATE_NATIVE_KERNELS=0.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
# argument types of the C functions
I32, I64, F32, PTR = ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
REQUIRED_CPU_FLAGS = ("avx512f", "avx512bw", "avx512_bf16", "avx512_vnni")  # every AVX-512 BF16 CPU has VNNI


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cache_dir() -> Path:
    from ossgate.vocab import data_dir

    return data_dir() / "kernels"


def _build(compiler: str, source: Path) -> Path:
    cpu = " ".join(sorted(cpu_flags())) + platform.machine()
    key = hashlib.sha256(source.read_bytes() + " ".join(FLAGS).encode() + cpu.encode()).hexdigest()[:16]
    target = _cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target and rename: concurrent first uses never see a half-written library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, str(source), "-o", tmp], check=True, capture_output=True, text=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("built CPU kernels at %s", target)
    return target


def load(source: Path, functions: dict[str, list]) -> ctypes.CDLL | None:
    """The compiled library for `source` with `functions` (name -> argument types, all return void) typed,
    or None where native kernels can't run here."""
    if os.environ.get("OSSGATE_NATIVE_KERNELS", "1") == "0":
        return None
    missing = [f for f in REQUIRED_CPU_FLAGS if f not in cpu_flags()]
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if missing or compiler is None:
        log.info("CPU kernels off (%s); using the PyTorch path", f"CPU lacks {missing}" if missing else "no g++")
        return None
    try:
        lib = ctypes.CDLL(str(_build(compiler, source)))
    except (subprocess.CalledProcessError, OSError) as e:
        detail = e.stderr[-2000:] if isinstance(e, subprocess.CalledProcessError) else e
        log.warning("could not build %s, using the PyTorch path: %s", source.name, detail)
        return None
    for name, argtypes in functions.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
    return lib
