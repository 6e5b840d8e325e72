# SemMIM on the built-in image-text pairs, ViT-tiny/8 at 64 px, 2-core CPU: `make pretrain METHOD=semmim`.
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/semmim.py"]

model = dict(arch={{_base_.arch}})
