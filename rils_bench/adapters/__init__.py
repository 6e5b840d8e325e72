"""Dense transfer: RILS ViT encoders as mmdet (Mask R-CNN, ViTDet design) and mmseg (UperNet) backbones.

- `backbone`: `RILSViT`, one backbone class for both libraries; `loading`: checkpoint -> backbone with a key report.
- `neck`: ViTDet's simple feature pyramid (mmdet); UperNet uses mmseg's own `MultiLevelNeck`.
- `layer_decay`: layer-wise lr decay as an mmengine optimizer-wrapper constructor.
- `convert`: exported checkpoint -> timm / mmdet / mmseg backbone weights (`rils-bench convert`).
- `mmdet`, `mmseg`: register the classes in each library's registries (configs import them via `custom_imports`).
- `dense_config`, `finetune`: fit a config to a checkpoint and dataset, train, evaluate, record (`rils-bench dense`).
- `commands`: the CLI subcommands.

Nothing is imported here, so that `rils_bench.adapters.commands` stays cheap and mmdet is not needed to use mmseg.
"""
