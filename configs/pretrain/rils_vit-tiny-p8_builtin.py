# RILS on the built-in image-text pairs, ViT-tiny/8 at 64 px, 2-core CPU: the default of `make pretrain`.
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/rils.py"]

model = dict(arch={{_base_.arch}})
