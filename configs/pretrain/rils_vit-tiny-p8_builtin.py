# RILS on the built-in image-text pairs, ViT-tiny/8 at 64 px, 2-core CPU: the default of `make pretrain`.
_base_ = ["./_base_/builtin_tiny.py"]

model = dict(
    type="PretrainModel",
    method="rils",
    arch={{_base_.arch}},
    # Paper values: 75 % masking, L = L_ITC + 0.5 L_MIM, teacher / student temperatures 0.04 / 0.1.
    # detach_prototypes=True is the reference's multi-GPU behaviour (no MIM gradient into the text tower);
    # it makes 1-process and N-process runs agree. See rils_bench/methods/losses.py.
    method_cfg=dict(mask_ratio=0.75, mim_weight=0.5, teacher_temp=0.04, student_temp=0.1, detach_prototypes=True),
    data_preprocessor={{_base_.data_preprocessor}},
)
