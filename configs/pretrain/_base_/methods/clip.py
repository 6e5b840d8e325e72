# CLIP: no masking, mean-pooled image embedding, L_ITC only.
# Written once here; each scale's config (`*_vit-*_builtin.py`, `*_laion20m.py`) inherits it.
model = dict(
    type="PretrainModel",
    method="clip",
)
