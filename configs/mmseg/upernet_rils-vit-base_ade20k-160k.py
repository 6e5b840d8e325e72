# UperNet with a RILS ViT-B/16 backbone on ADE20K, MAE's segmentation recipe (He et al., 2022; BEiT's protocol),
# for GPU clusters:
#   512 x 512 crops (random resize of the 2048 x 512 scale by 0.5-2.0, flip, photometric distortion), 160k
#   iterations at batch 16, AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, layer-wise lr decay 0.65, drop
#   path 0.1, 1500 linear warm-up iterations then poly decay (power 1.0) to 0; sliding-window inference (512 crops,
#   stride 341); features after blocks 4, 6, 8 and 12, UperNet of 768 channels + an FCN auxiliary head.
# Differences from MAE's code: the multi-scale features come from mmseg's MultiLevelNeck (1x1 conv, bilinear resize
# to strides 4-32, 3x3 conv) over the encoder's final-normed block outputs, not from deconvolutions; the blocks
# have no relative position bias (the encoder was pre-trained without one).
# Batch 16 = 8 GPUs x 2. Data: $DATA_ROOT, default data/ade/ADEChallengeData2016/.
# Run: torchrun --nproc_per_node=8 -m rils_bench.cli dense --task ade --ckpt CKPT --config <this file> \
#        --data-root /path/to/ADEChallengeData2016/ --launcher pytorch
_base_ = [
    "mmseg::_base_/models/upernet_vit-b16_ln_mln.py",
    "mmseg::_base_/datasets/ade20k.py",
    "mmseg::_base_/default_runtime.py",
    "mmseg::_base_/schedules/schedule_160k.py",
]
custom_imports = dict(imports=["rils_bench.adapters.mmseg"], allow_failed_imports=False)

dataset_name = "ade20k"  # the record's dataset
# The encoder size is the checkpoint's: `rils-bench dense` fills in backbone.arch and the neck's in_channels and
# scales from it (rils_bench.adapters.dense_config.fit_to_encoder), so this config does not state them (for ViT-B/16:
# [768] * 4 and 4, 2, 1, 0.5, MAE's).
data_root = "{{$DATA_ROOT:data/ade/ADEChallengeData2016/}}"
crop_size = (512, 512)
max_iters = 160000
warmup_iters = 1500

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="RILSViT",
        img_size=crop_size[0],
        out_indices="uper",
        final_norm=True,
        with_cls_token=True,
        drop_path_rate=0.1,
        init_cfg=None,  # `rils-bench dense` sets dict(type='Pretrained', checkpoint=<converted backbone>)
    ),
    neck=dict(_delete_=True, type="MultiLevelNeck", out_channels=768),  # mmseg's base states ViT-B's inputs
    decode_head=dict(in_channels=[768] * 4, channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(341, 341)),
)

train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type="AmpOptimWrapper",  # `rils-bench dense` switches to OptimWrapper (fp32) on CPU
    constructor="LayerDecayOptimWrapperConstructor",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.65),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type="PolyLR", eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
