"""One pre-training step of `PretrainModel`, run by the tests in 1 process or under torchrun (gloo, CPU).

Usage: python dist_worker.py METHOD DETACH OUT_DIR. Every process builds the same model (same seed), takes its
slice of one fixed global batch, runs forward + backward through DDP, and writes its loss and the (averaged)
gradients to OUT_DIR/rank<r>.pt.
"""

import os
import sys

import torch
import torch.distributed as dist

GLOBAL_BATCH = 8
CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a red square", "a blue circle", "a green circle",
            "a red triangle", "a blue triangle"]  # fmt: skip


def main(method: str, detach: str, out_dir: str) -> None:
    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(0)

    from rils_bench.train.model import PretrainModel

    cfg = {"detach_prototypes": detach == "1"} if method == "rils" else {}
    model = PretrainModel(method=method, arch="rils_vit_test_patch8", method_cfg=cfg)
    images = torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    local = GLOBAL_BATCH // world
    rows = slice(rank * local, (rank + 1) * local)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    losses = net(images[rows], CAPTIONS[rows], mode="loss")
    losses["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.save({"loss": losses["loss"].detach(), "grads": grads}, os.path.join(out_dir, f"rank{rank}.pt"))
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
