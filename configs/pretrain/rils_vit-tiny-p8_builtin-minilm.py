# RILS on the built-in image-text pairs, ViT-tiny/8 at 64 px, 2-core CPU, with a pre-trained, locked MiniLM sentence
# encoder as the text tower: the language semantic space exists from step 0 (issue 16).
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/rils.py", "./_base_/text/minilm.py"]

# The same L_MIM weight as rils_vit-tiny-p8_builtin.py (why: docs/pretrain-ablation.md, section 4).
model = dict(arch={{_base_.arch}}, text={{_base_.text_tower}}, method_cfg=dict(mim_weight=0.1))
