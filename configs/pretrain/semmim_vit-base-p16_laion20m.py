# SemMIM, ViT-B/16, LAION-20M shards, 25 epochs at global batch 4096 (the RILS paper's setting, for comparison).
# Loss weights stay 1.0 (the tiny config's 0.25 is for batch 64). Head sizes as iBOT's ViT-B (8192 prototypes,
# bottleneck 256, hidden 2048) and DINO's momentum 0.996.
_base_ = ["./_base_/laion_base.py", "./_base_/methods/semmim.py"]

model = dict(
    arch={{_base_.arch}},
    method_cfg=dict(prototypes=8192, head_hidden=2048, head_bottleneck=256, momentum=0.996),
)
