# MAE+CLIP: pixel MIM + L_ITC on the visible-token pass.
# Written once here; each scale's config (`*_vit-*_builtin.py`, `*_laion20m.py`) inherits it.
model = dict(
    type="PretrainModel",
    method="mae_clip",
    method_cfg=dict(mask_ratio=0.75, mim_weight=1.0, norm_pix=True),
)
