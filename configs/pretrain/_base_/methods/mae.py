# MAE: normalised-pixel reconstruction of 75 % masked patches; image only (captions unused).
# Written once here; each scale's config (`*_vit-*_builtin.py`, `*_laion20m.py`) inherits it.
model = dict(
    type="PretrainModel",
    method="mae",
    method_cfg=dict(mask_ratio=0.75, norm_pix=True),
)
