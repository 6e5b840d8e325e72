# RILS (the paper's main setting), ViT-B/16, LAION-20M shards, 25 epochs at global batch 4096.
# See _base_/laion_base.py for what is assumed.
_base_ = ["./_base_/laion_base.py"]

model = dict(
    type="PretrainModel",
    method="rils",
    arch={{_base_.arch}},
    method_cfg=dict(mask_ratio=0.75, mim_weight=0.5, teacher_temp=0.04, student_temp=0.1, detach_prototypes=True),
    data_preprocessor={{_base_.data_preprocessor}},
)
