# MAE+CLIP baseline (pixel MIM + L_ITC on the visible-token pass) on the same data, model and schedule as RILS.
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/mae_clip.py"]

# Mask ratio 0.5 as the MAE baseline at this scale (why: mae_vit-tiny-p8_builtin.py); not measured on its own.
model = dict(arch={{_base_.arch}}, method_cfg=dict(mask_ratio=0.5))
