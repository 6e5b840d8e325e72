# CLIP baseline (no masking, GAP image embedding, L_ITC only) on the same data, model and schedule as RILS.
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/clip.py"]

model = dict(arch={{_base_.arch}})
