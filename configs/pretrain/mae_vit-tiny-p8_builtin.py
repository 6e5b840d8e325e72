# MAE baseline (normalised-pixel target, image only) on the same images, encoder and schedule as RILS.
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/mae.py"]

# Mask ratio 0.5 instead of MAE's 0.75 at this scale: at the study's 32 px the grid is 4 x 4, and 0.75 leaves 4
# visible patches. 700 steps at 32 px, seed 0, 4-shot fashion-mnist / animal-mnist: 0.75 gave 45.6 / 34.4 (animal
# below the random floor's 37.5), 0.5 gave 48.6 / 42.5 (docs/pretrain-ablation.md, section 9).
model = dict(arch={{_base_.arch}}, method_cfg=dict(mask_ratio=0.5))
