# RILS (the paper's main setting), ViT-B/16, LAION-20M shards, 25 epochs at global batch 4096.
# See _base_/laion_base.py for what is assumed.
_base_ = ["./_base_/laion_base.py", "./_base_/methods/rils.py"]

model = dict(arch={{_base_.arch}})
