# MAE baseline (images of the same shards; captions unused), ViT-B/16, LAION-20M shards, 25 epochs at global batch 4096.
# See _base_/laion_base.py for what is assumed.
_base_ = ["./_base_/laion_base.py"]

model = dict(
    type="PretrainModel",
    method="mae",
    arch={{_base_.arch}},
    method_cfg=dict(mask_ratio=0.75, norm_pix=True),
    data_preprocessor={{_base_.data_preprocessor}},
)
