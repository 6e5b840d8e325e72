# MAE baseline (normalised-pixel target, image only) on the same images, encoder and schedule as RILS.
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/mae.py"]

model = dict(arch={{_base_.arch}})
