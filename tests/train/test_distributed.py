"""Two torchrun processes (gloo, CPU) give the same loss and gradients as one process with the same global batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, method: str, detach: str, nproc: int) -> list[dict]:
    out.mkdir()
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), method, detach, str(out)]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
        rendezvous = ["--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
        cmd = [*launcher, *rendezvous, str(WORKER), method, detach, str(out)]
    # One thread per process: two ranks share the two cores.
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(nproc)]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "detach"), [("rils", "1"), ("rils", "0"), ("semmim", "1")])
def test_two_ranks_match_one_process(tmp_path, method, detach):
    (single,) = _run(tmp_path / "one", method, detach, 1)
    ranks = _run(tmp_path / "two", method, detach, 2)

    # DDP averages gradients, so the one-process loss is the mean of the ranks' losses.
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, single["loss"], rtol=1e-5, atol=1e-6)
    assert single["grads"].keys() == ranks[0]["grads"].keys()
    if method == "rils":  # the flag decides whether the text tower learns from L_MIM; ITC always reaches it
        assert any(k.startswith("method.encoder.text.") for k in single["grads"])
    for name, grad in single["grads"].items():
        torch.testing.assert_close(ranks[0]["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(ranks[1]["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
