"""Helpers of the pre-training tests."""


def tiny_options(table, max_iters=2, **extra):
    """The real configs, shrunk: the unit-test model, the shapes table, a few iterations, no workers."""
    return {
        "model.arch": "rils_vit_test_patch8",
        "train_dataloader.dataset": dict(_delete_=True, type="ImageTextPairs", table=str(table), image_size=32),
        "train_dataloader.batch_size": 4,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "train_cfg.max_iters": max_iters,
        "default_hooks.logger.interval": 1,
        **extra,
    }
