# MAE baseline (normalised-pixel target, image only) on the same images, encoder and schedule as RILS.
_base_ = ["./_base_/builtin_tiny.py"]

model = dict(
    type="PretrainModel",
    method="mae",
    arch={{_base_.arch}},
    method_cfg=dict(mask_ratio=0.75, norm_pix=True),
    data_preprocessor={{_base_.data_preprocessor}},
)
