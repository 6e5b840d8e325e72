"""The exported checkpoint format loads with weights_only=True and refuses what is not ours."""

import os

import numpy as np
import pytest
import torch

from rils_bench import compat
from rils_bench.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_is_weights_only(tmp_path):
    state = {"encoder.weight": torch.randn(3, 4), "encoder.bias": torch.zeros(3)}
    meta = {"method": "rils", "steps": 10, "seed": 0, "model": {"embed_dim": 192, "depth": 12}, "lr": 1.5e-4}
    path = save_checkpoint(tmp_path / "ckpt.pth", state, meta)

    raw = torch.load(path, map_location="cpu", weights_only=True)  # what any user would call
    assert raw["format"] == FORMAT
    loaded = load_checkpoint(path)
    assert loaded["meta"] == meta
    assert loaded["state_dict"].keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(loaded["state_dict"][k], v)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no temporary left behind


def test_refuses_missing_foreign_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")

    foreign = tmp_path / "timm.pth"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="expected format"):
        load_checkpoint(foreign)

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a zip archive")
    with pytest.raises(CheckpointError, match="tensor-only"):
        load_checkpoint(corrupt)

    pickled = tmp_path / "pickled.pth"
    torch.save({"format": FORMAT, "state_dict": {}, "meta": {"obj": np.dtype("float32")}}, pickled)
    with pytest.raises(CheckpointError, match="tensor-only"):
        load_checkpoint(pickled)


def test_weights_only_loads_allow_exactly_the_listed_types_whatever_the_environment(tmp_path, monkeypatch):
    # mmengine's resume files hold numpy scalars; torch's escape hatch for them, set by a user, must not open pickle.
    path = tmp_path / "runner.pth"
    torch.save({"message_hub": np.float64(1.5)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with compat.weights_only_loads(), pytest.raises(Exception, match="[Ww]eights only"):
        torch.load(path, weights_only=False)  # the block wins over the caller and the environment
    allowed = [np.dtype, type(np.dtype("float64")), np._core.multiarray.scalar]
    with compat.weights_only_loads(allowed):
        assert torch.load(path)["message_hub"] == 1.5
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1" and "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    assert torch.load(path, weights_only=False)["message_hub"] == 1.5  # outside the block: as the caller asked
