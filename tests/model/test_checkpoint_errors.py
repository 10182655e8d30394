"""Each broken checkpoint fails before any computation, with a one-line message naming the file or tensor."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from ossgate.errors import CheckpointError
from ossgate.model.checkpoint import locate


@pytest.fixture
def broken(tiny_checkpoint, tmp_path):
    out = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, out)
    return out


def shard_of(path):
    return next(path.glob("model-*.safetensors"))


def rewrite(path, change):
    shard = shard_of(path)
    tensors = load_file(str(shard))
    change(tensors)
    save_file(tensors, str(shard), metadata={"format": "pt"})


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a gpt-oss checkpoint"):
        locate(tmp_path)


def test_missing_shard(broken):
    shard_of(broken).unlink()
    with pytest.raises(CheckpointError, match=r"model-00001-of-00001.safetensors: shard .* is missing"):
        locate(broken)


def test_truncated_file(broken):
    shard = shard_of(broken)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model-00001-of-00001.safetensors: truncated"):
        locate(broken)


def test_wrong_shape(broken):
    name = "model.layers.1.self_attn.q_proj.weight"
    rewrite(broken, lambda t: t.__setitem__(name, t[name][:-1].clone()))
    with pytest.raises(CheckpointError, match=rf"tensor {name} has shape \(63, 64\), expected \(64, 64\)"):
        locate(broken)


def test_wrong_dtype(broken):
    name = "model.layers.0.mlp.experts.gate_up_proj_scales"
    rewrite(broken, lambda t: t.__setitem__(name, t[name].to(torch.float32)))
    with pytest.raises(CheckpointError, match=rf"tensor {name} has dtype F32, expected U8"):
        locate(broken)


def test_missing_tensor(broken):
    name = "model.layers.2.self_attn.sinks"
    rewrite(broken, lambda t: t.pop(name))
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    del index["weight_map"][name]
    (broken / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"tensor {name} is missing"):
        locate(broken)


def test_config_missing_key(broken):
    config = json.loads((broken / "config.json").read_text())
    del config["num_local_experts"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: missing key\(s\) num_local_experts"):
        locate(broken)


def test_cli_prints_one_line_and_exits_nonzero(broken):
    shard_of(broken).write_bytes(b"\x00" * 4)
    run = subprocess.run(
        [sys.executable, "-m", "ossgate", "generate", "--model", str(broken), "--prompt", "hi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert "truncated" in run.stderr and "Traceback" not in run.stderr
