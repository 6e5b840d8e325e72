# MAE+CLIP baseline (pixel MIM + L_ITC on the visible-token pass) on the same data, model and schedule as RILS.
_base_ = ["./_base_/builtin_tiny.py"]

model = dict(
    type="PretrainModel",
    method="mae_clip",
    arch={{_base_.arch}},
    method_cfg=dict(mask_ratio=0.75, mim_weight=1.0, norm_pix=True),
    data_preprocessor={{_base_.data_preprocessor}},
)
