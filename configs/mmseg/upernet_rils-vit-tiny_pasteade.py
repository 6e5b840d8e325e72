# The default of `make eval-ade`: the MAE-UperNet recipe of upernet_rils-vit-base_ade20k-160k.py scaled to a RILS
# ViT-Ti/8 (pre-trained at 64 px) and the built-in `pasteade` set (400 train / 100 val images of 256 px, 15 classes
# with a scored background), so that fine-tuning + evaluation fit in 20 minutes on 2 CPU cores.
# What changes, and why:
#   - 128 x 128 crops of images randomly resized by 0.5-2.0 (as ADE20K's 512 crops of 512-px images), sliding-window
#     inference on the native 256 px (128 crops, stride 85);
#   - SMALLER HEADS: neck / UperNet width 64 (not 768), auxiliary head 32, BatchNorm (one process, no SyncBN);
#   - neck scales 2, 1, 0.5, 0.25: a patch-8 map reaches strides 4-32 with half MAE's factors;
#   - 1500 iterations at batch 4 (15 epochs), 150 warm-up iterations, then poly; evaluation only at the end;
#   - AdamW lr 1e-3, 10x the recipe's, for a schedule ~100x shorter (layer decay 0.65 as the recipe): with the
#     make-pretrain checkpoint, lr 1e-4 ended predicting background everywhere (mIoU 5.4 = background IoU / 15),
#     lr 1e-3 segmented three classes (mIoU 8.1).
# Classes and num_classes come from the prepared set's classes.json (`rils-bench dense` fills them in).
_base_ = "./upernet_rils-vit-base_ade20k-160k.py"

dataset_name = "pasteade"
data_root = "{{$DATA_ROOT:data/pasteade/}}"
crop_size = (128, 128)
image_scale = (256, 256)
width = 64
max_iters = 1500
warmup_iters = 150
head_norm = dict(type="BN", requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size[0]),
    neck=dict(out_channels=width),
    decode_head=dict(in_channels=[width] * 4, channels=width, norm_cfg=head_norm),
    auxiliary_head=dict(in_channels=width, channels=width // 2, norm_cfg=head_norm),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(85, 85)),
)

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    dict(type="RandomResize", scale=image_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    dict(type="PackSegInputs"),
]
# pasteade is read with BaseSegDataset: ADE20KDataset refuses other class names (see rils_bench.data.builtin.paste).
seg_dataset = dict(
    type="BaseSegDataset", data_root=data_root, img_suffix=".png", seg_map_suffix=".png", reduce_zero_label=False
)
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        **seg_dataset,
        pipeline=train_pipeline,
        data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
    ),
)
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        **seg_dataset,
        pipeline=test_pipeline,
        data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
    ),
)
test_dataloader = val_dataloader

optim_wrapper = dict(type="OptimWrapper", optimizer=dict(lr=1e-3))  # fp32: this CPU has no fast bf16 / fp16
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type="PolyLR", eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=max_iters))
