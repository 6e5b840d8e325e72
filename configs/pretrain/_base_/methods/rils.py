# RILS: masked features reconstructed in language space, L = L_ITC + 0.5 L_MIM.
# Paper values: 75 % masking, teacher / student temperatures 0.04 / 0.1. detach_prototypes=True is the reference's
# multi-GPU behaviour (no MIM gradient into the text tower); it makes 1-process and N-process runs agree.
# See rils_bench/methods/losses.py.
# Written once here; each scale's config (`*_vit-*_builtin.py`, `*_laion20m.py`) inherits it.
model = dict(
    type="PretrainModel",
    method="rils",
    method_cfg=dict(mask_ratio=0.75, mim_weight=0.5, teacher_temp=0.04, student_temp=0.1, detach_prototypes=True),
)
