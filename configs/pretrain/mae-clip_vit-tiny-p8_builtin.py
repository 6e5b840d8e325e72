# MAE+CLIP baseline (pixel MIM + L_ITC on the visible-token pass) on the same data, model and schedule as RILS.
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/mae_clip.py"]

model = dict(arch={{_base_.arch}})
