# Mask R-CNN with a RILS ViT-B/16 backbone on COCO, ViTDet's recipe (Li et al., 2022, "Exploring Plain Vision
# Transformer Backbones for Object Detection"), for GPU clusters:
#   large-scale jitter at 1024 px (scale 0.1-2.0), AdamW lr 1e-4 at batch 64, weight decay 0.1, layer-wise lr decay
#   0.7, drop path 0.1, 100 epochs (mmdet's LSJ base: the train set repeated 4x for 25 epochs, lr steps x0.1 at 88%
#   and 96%), 250 warm-up iterations; window attention (14 x 14 = the pre-training grid) with global blocks 2, 5, 8,
#   11 and relative position biases; a simple feature pyramid (strides 4-32 from the last map, + P6); RPN with 2
#   convs, 4-conv + 1-fc box head and mask head normalised with LayerNorm.
# Differences from ViTDet: the absolute position embedding is the encoder's (sin-cos at pre-training, trainable
# here); the test image is padded to 1024 x 1024 with mean colour (ViTDet pads with 114).
# Batch 64 = 16 GPUs x 4 (or 8 x 8: change train_dataloader.batch_size; auto_scale_lr records the base batch).
# Data: $DATA_ROOT, default data/coco/ (train2017/, val2017/, annotations/instances_{train,val}2017.json).
# Run: torchrun --nproc_per_node=8 -m rils_bench.cli dense --task coco --ckpt CKPT --config <this file> \
#        --data-root /path/to/coco/ --launcher pytorch
_base_ = [
    "mmdet::_base_/models/mask-rcnn_r50_fpn.py",
    "mmdet::common/lsj-100e_coco-instance.py",
]
custom_imports = dict(imports=["rils_bench.adapters.mmdet"], allow_failed_imports=False)

dataset_name = "coco"  # the record's dataset
# The encoder size is the checkpoint's: `rils-bench dense` fills in backbone.arch and the neck's in_channels and
# backbone_stride from it (rils_bench.adapters.dense_config.fit_to_encoder), so this config does not state them.
data_root = "{{$DATA_ROOT:data/coco/}}"
image_size = (1024, 1024)
head_norm = dict(type="LN2d", requires_grad=True)

model = dict(
    data_preprocessor=dict(batch_augments=[dict(type="BatchFixedSizePad", size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type="RILSViT",
        img_size=image_size[0],
        out_indices="last",
        final_norm=False,
        with_cls_token=False,
        window_size="auto",
        global_indices="auto",
        use_rel_pos=True,
        drop_path_rate=0.1,
        init_cfg=None,  # `rils-bench dense` sets dict(type='Pretrained', checkpoint=<converted backbone>)
    ),
    neck=dict(
        _delete_=True,
        type="SimpleFeaturePyramid",
        out_channels=256,
        strides=(4, 8, 16, 32),
        num_outs=5,
    ),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type="Shared4Conv1FCBBoxHead", conv_out_channels=256, norm_cfg=head_norm),
        mask_head=dict(norm_cfg=head_norm),
    ),
)

test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=image_size, keep_ratio=True),
    # Pad to the training canvas, so that every patch has the position embedding it was trained with.
    dict(type="Pad", size=image_size, pad_val=dict(img=(104, 116, 124))),  # the mean colour, BGR as loaded
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
train_dataloader = dict(batch_size=4, num_workers=4, dataset=dict(dataset=dict(data_root=data_root)))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + "annotations/instances_val2017.json")
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type="AmpOptimWrapper",  # `rils-bench dense` switches to OptimWrapper (fp32) on CPU
    constructor="LayerDecayOptimWrapperConstructor",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(layer_decay_rate=0.7),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type="MultiStepLR", by_epoch=True, begin=0, end={{_base_.max_epochs}}, milestones=[22, 24], gamma=0.1),
]
