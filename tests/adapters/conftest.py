"""Fixtures of the dense-transfer tests: an exported checkpoint of the unit-test size, and the `shapes` set."""

from __future__ import annotations

import pytest
import torch
from dense_testing import ARCH

from rils_bench.checkpoint import save_checkpoint
from rils_bench.methods import build_method


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(path, encoder in eval mode) of an exported RILS checkpoint, as pre-training writes it."""
    torch.manual_seed(0)
    method = build_method("rils", ARCH)
    # Non-zero cls token and biases, so that a wrongly mapped or dropped tensor changes the features.
    with torch.no_grad():
        for name, param in method.encoder.visual.named_parameters():
            if name.endswith("bias") or name == "cls_token":
                param.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("ckpt") / "rils.pth"
    meta = {"method": "rils", "model_config": method.encoder.config, "steps": 0, "seed": 0}
    save_checkpoint(path, method.state_dict(), meta)
    return path, method.encoder.eval()


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    from rils_bench.data.builtin import prepare

    return prepare.prepare("shapes", root=tmp_path_factory.mktemp("shapes-data"))
