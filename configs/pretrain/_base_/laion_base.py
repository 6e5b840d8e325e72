# Paper scale: ViT-B/16 at 224 px on LAION-20M-style WebDataset shards, GPU cluster (nccl, AMP).
# ASSUMED, not from the paper (its optimisation values were not available to us): lr, weight decay and warm-up
# follow the SLIP recipe for ViT-B (AdamW lr 5e-4 at batch 4096, wd 0.5, betas 0.9/0.98, cosine, warm-up).
_base_ = ["./runtime.py"]

arch = "rils_vit_base_patch16"
image_size = 224
data_root = "{{$DATA_ROOT:data/laion20m}}"  # shards: {data_root}/{00000..01999}.tar
num_samples = 20_000_000
epochs = 25
# The batch of one optimizer step over all ranks. The per-rank `train_dataloader.batch_size` is derived from it and
# the world size the run actually has (rils_bench.train.runner.finalize_batch): 64 GPUs get 64 each, one GPU 4096.
global_batch = 4096

train_dataloader = dict(
    num_workers=8,
    persistent_workers=True,
    sampler=None,  # an IterableDataset: shards are split across ranks and workers by webdataset
    collate_fn=dict(type="default_collate"),
    dataset=dict(
        type="ImageTextShards", urls=data_root + "/{00000..01999}.tar", num_samples=num_samples, image_size=image_size
    ),
)
# 25 epochs of 20M pairs at 4096 per step, derived here once.
train_cfg = dict(type="IterBasedTrainLoop", max_iters=num_samples * epochs // global_batch)
warmup_ratio = 1 / epochs  # one epoch of warm-up
env_cfg = dict(dist_cfg=dict(backend="nccl"))
optim_wrapper = dict(optimizer=dict(lr=5e-4, weight_decay=0.5))
default_hooks = dict(checkpoint=dict(interval=5000), logger=dict(interval=50))
