"""The engine is a plain training loop: mmengine's Runner must train exactly as the loop written out by hand.

The reference below is the textbook loop (normalise, tokenize, forward, AdamW step, scheduled learning rate),
with every choice the configs promise written out once by hand: CLIP's mean/std, AdamW betas 0.9/0.98, no weight
decay on 1-D parameters, tokens, the text position embedding and the logit scale, linear warm-up then cosine
decay. Fed the batches the engine drew and started from its initial weights, it must give the same loss at every
step and the same final parameters. Any silent change on the engine path (a preprocessor that normalises twice,
a loss term logged but not back-propagated, a parameter group or learning rate that differs from the config, a
schedule that never warms up) breaks the equality.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from rils_bench.data.builtin.prepare import prepare
from rils_bench.methods import build_method
from rils_bench.models.registry import resolve_config
from rils_bench.models.text import tokenize
from rils_bench.train.runner import load_config

CONFIGS = {
    "clip": "configs/pretrain/clip_vit-tiny-p8_builtin.py",
    "rils": "configs/pretrain/rils_vit-tiny-p8_builtin.py",
}
STEPS = 6
LEARNING_STEPS = 120
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1) * 255
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1) * 255
NO_DECAY = ("cls_token", "mask_token", "positional_embedding", "logit_scale")


@HOOKS.register_module(force=True)
class RecordRun(Hook):
    """Keeps the initial weights, the raw batches, the learning rates and the losses of a run."""

    priority = "VERY_HIGH"
    runs: list[dict] = []

    def before_train(self, runner) -> None:
        self.run = {"init": copy.deepcopy(runner.model.state_dict()), "batches": [], "lr": [], "loss": []}
        RecordRun.runs.append(self.run)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.run["batches"].append(copy.deepcopy(data_batch))
        self.run["lr"].append({g["lr"] for g in runner.optim_wrapper.optimizer.param_groups})

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.run["loss"].append(outputs["loss"].item())
        self.run["final"] = runner.model.state_dict()


def reference_lr(step: int, *, base: float, warmup: int, total: int, start_factor: float) -> float:
    """Linear warm-up from `start_factor * base`, reaching `base` at step `warmup - 1`, then cosine to 0."""
    if step < warmup:
        return base * (start_factor + (1 - start_factor) * step / (warmup - 1))
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def reference_run(method_name: str, cfg: Config, run: dict) -> tuple[list[float], dict[str, torch.Tensor]]:
    """The plain loop over the engine's batches, from the engine's initial weights."""
    model = {**resolve_config(cfg.model.arch), **cfg.model.get("text", {})}  # as PretrainModel builds it
    method = build_method(method_name, model, **cfg.model.get("method_cfg", {}))
    method.load_state_dict({k.removeprefix("method."): v for k, v in run["init"].items() if k.startswith("method.")})
    decay, no_decay = [], []
    for name, param in method.named_parameters():
        (no_decay if param.ndim < 2 or any(k in name for k in NO_DECAY) else decay).append(param)
    opt = cfg.optim_wrapper.optimizer
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
    )
    warmup = cfg.param_scheduler[0].end
    mask_seed = int(run["init"]["mask_seed"])
    losses = []
    for step, batch in enumerate(run["batches"]):
        lr = reference_lr(step, base=opt.lr, warmup=warmup, total=STEPS, start_factor=0.001)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = (torch.stack(list(batch["inputs"])).float() - CLIP_MEAN) / CLIP_STD
        tokens = tokenize(list(batch["data_samples"]), method.encoder.config["context_length"])
        # The masks PretrainModel promises: one generator per (seed, step) over the (here single-rank) batch.
        generator = torch.Generator().manual_seed(mask_seed * 1_000_003 + step)
        noise = torch.rand(len(images), method.encoder.visual.num_patches, generator=generator)
        loss = method(images, tokens, mask_noise=noise)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, method.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_engine_trains_exactly_as_the_plain_loop(method, tmp_path):
    from rils_bench.train.runner import PretrainRunner

    table = prepare("shapes", root=tmp_path / "data") / "imagetext" / "train.csv"
    options = {
        "model.arch": "rils_vit_test_patch8",
        "train_dataloader.dataset": dict(_delete_=True, type="ImageTextPairs", table=str(table), image_size=32),
        "train_dataloader.batch_size": 8,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "train_cfg.max_iters": STEPS,
        "warmup_ratio": 0.5,  # 3 warm-up steps, then 3 of cosine: both phases are checked
        "optim_wrapper.optimizer.weight_decay": 0.3,  # large enough that a wrong parameter group shows
        "precision": "fp32",  # the reference loop runs in fp32 (bf16 parity: tests/test_precision.py)
    }
    cfg = load_config(CONFIGS[method], work_dir=tmp_path / "run", cfg_options=options)
    cfg.custom_hooks = [*cfg.custom_hooks, dict(type="RecordRun")]
    RecordRun.runs.clear()
    PretrainRunner.from_cfg(cfg).train()
    (run,) = RecordRun.runs

    assert all(len(lrs) == 1 for lrs in run["lr"])  # one learning rate for every group: no hidden multipliers
    expected_lr = [
        reference_lr(s, base=cfg.optim_wrapper.optimizer.lr, warmup=3, total=STEPS, start_factor=0.001)
        for s in range(STEPS)
    ]
    assert [lrs.pop() for lrs in run["lr"]] == pytest.approx(expected_lr, rel=1e-9)

    losses, final = reference_run(method, cfg, run)
    assert run["loss"] == pytest.approx(losses, rel=1e-5, abs=1e-6)
    engine_final = {k.removeprefix("method."): v for k, v in run["final"].items() if k.startswith("method.")}
    assert engine_final.keys() == final.keys()
    moved = 0
    for name, value in final.items():
        engine_value = engine_final[name]
        if name.endswith(("qkv.bias", "in_proj_bias")):
            # The key bias adds the same number to every logit of a query's softmax: its true gradient is 0 and
            # what is left is float round-off, which Adam scales up to lr-sized steps of arbitrary sign. Query
            # and value biases are compared; the key third only for staying within its lr-bounded range.
            width = value.shape[0] // 3
            key = slice(width, 2 * width)
            assert (engine_value[key] - value[key]).abs().max() <= 2 * STEPS * cfg.optim_wrapper.optimizer.lr
            engine_value, value = engine_value.clone(), value.clone()
            engine_value[key] = value[key] = 0
        torch.testing.assert_close(engine_value, value, rtol=1e-4, atol=1e-5, msg=name)
        moved += not torch.equal(value, run["init"][f"method.{name}"])
    assert moved > len(final) // 2  # the loop really trained


@pytest.mark.slow
def test_a_short_clip_run_beats_the_random_floor_in_domain(tmp_path):
    """The whole path (built-in pairs -> engine -> export -> zero-shot) learns: fashion-mnist garments are in the
    pre-training pairs, so a few hundred CLIP steps of the unit-test model must classify them far above a random
    init. A silently broken engine (no update, a detached loss, a wrong learning rate) stays at the floor."""
    from rils_bench.eval.features import ExtractOptions
    from rils_bench.eval.zeroshot import run_zeroshot
    from rils_bench.train.runner import run_pretrain

    options = {
        "model.arch": "rils_vit_test_patch8",
        "train_dataloader.dataset.image_size": 32,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "train_cfg.max_iters": LEARNING_STEPS,
        "default_hooks.logger.interval": 50,
    }
    export = run_pretrain(config=CONFIGS["clip"], work_dir=tmp_path / "run", cfg_options=options)
    extract = ExtractOptions(num_workers=0, cache=tmp_path / "features", progress=False)

    def top1(ckpt: str) -> float:
        return run_zeroshot(ckpt=ckpt, dataset="fashion-mnist", options=extract, write=False)["metrics"]["top1"]

    trained, floor = top1(str(export)), top1("random:rils_vit_test_patch8")
    assert trained >= floor + 10, (trained, floor)
