# CLIP baseline (no masking, GAP image embedding, L_ITC only) on the same data, model and schedule as RILS.
_base_ = ["./_base_/builtin_tiny.py"]

model = dict(
    type="PretrainModel",
    method="clip",
    arch={{_base_.arch}},
    data_preprocessor={{_base_.data_preprocessor}},
)
