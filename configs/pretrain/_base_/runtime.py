# Runtime shared by every pre-training config: mmengine hooks, logging, export. Method, model, data and
# schedule come from the configs that inherit this one.
custom_imports = dict(imports=["rils_bench.train"], allow_failed_imports=False)
runner_type = "PretrainRunner"

randomness = dict(seed=0, deterministic=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="gloo"),  # GPU configs override with nccl
)
log_level = "INFO"
log_processor = dict(by_epoch=False, window_size=10)
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=200, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
# Bad samples (missing / truncated images, non-UTF-8 captions, corrupt shard members, cut tars) are skipped and
# counted; the run stops with one line when more than `limit` of what was read was bad (rils_bench.data.bad_samples).
custom_hooks = [
    dict(type="ThroughputHook"),
    dict(type="BadSampleHook", limit=0.01),
    dict(type="ExportCheckpointHook"),
]

# Images are normalised by PretrainModel's default data preprocessor: CLIP's RGB mean/std from open_clip, the same
# statistics the evaluations use (rils_bench.train.model.CLIP_PREPROCESSOR).

# AdamW as CLIP/SLIP: betas (0.9, 0.98), eps 1e-8; no weight decay on biases and norms (1-D parameters),
# tokens, the text position embedding and the logit scale.
# Mixed precision: auto = bf16 autocast on a GPU with bf16 or a CPU with native bf16 (avx512_bf16 / amx_bf16),
# fp16 + loss scaling on other GPUs, fp32 elsewhere (rils_bench/precision.py); `--precision` overrides it. The
# optimizer wrapper's type is set from it (rils_bench.train.runner.finalize_precision), never written here.
precision = "auto"
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=5e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.1),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        bias_decay_mult=0.0,
        norm_decay_mult=0.0,
        custom_keys={
            "cls_token": dict(decay_mult=0.0),
            "mask_token": dict(decay_mult=0.0),
            "positional_embedding": dict(decay_mult=0.0),
            "logit_scale": dict(decay_mult=0.0),
        },
    ),
    accumulative_counts=1,
)

# Iteration-based schedule; warm-up and cosine bounds are derived from train_cfg.max_iters and warmup_ratio by
# rils_bench.train.runner.finalize_schedule, so only those two numbers are ever written.
warmup_ratio = 0.05
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False),
    dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=False),
]
