# The comparison study (`make study`, `rils-bench study configs/study/default.py`): every method pre-trained on the
# built-in image-text pairs at the same budget, then every classification evaluation, then the tables.
# The budget is stated here once; the study derives each run's settings from it (rils_bench/study/plan.py):
# steps = images_seen / batch_size, the same encoder, input size, data order (the sampler's seed) and seeds for every
# method, precision `auto` (bf16 on a CPU with native bf16).

# method -> its tiny built-in pre-training config (method recipe, loss weights, text tower). Add a row to add a method.
methods = {
    "rils": "configs/pretrain/rils_vit-tiny-p8_builtin.py",
    "clip": "configs/pretrain/clip_vit-tiny-p8_builtin.py",
    "mae": "configs/pretrain/mae_vit-tiny-p8_builtin.py",
    "mae_clip": "configs/pretrain/mae-clip_vit-tiny-p8_builtin.py",
    "semmim": "configs/pretrain/semmim_vit-tiny-p8_builtin.py",
}
arch = "rils_vit_tiny_patch8"
# 32 px, not the size's own 64: a 4 x 4 grid of 8 px patches (16 tokens, MNIST-ViT's layout; the Fashion-/Animal-MNIST
# pictures are 28 px). A step costs 0.6-0.65x the 64 px one, so the 2 h limit buys 1.7x the images; at 350 steps of
# 64 px no method cleared the random floor on animal-mnist (docs/pretrain-ablation.md, section 9).
image_size = 32
batch_size = 64
# 600 steps of 64 (~3.4 epochs of the 11,268 pairs): what fits the 2 h limit on the 2-core machine.
images_seen = 38_400
seeds = [0, 1]  # pre-training seeds: initialisation, data order, masks
precision = "auto"

# The floors every trained method is compared with: a randomly initialised encoder of the same size, and the
# resized, normalised image itself (`pixels:<side>`; probes that take features only).
# The random encoder is built at the study's input size (`@32`; the study refuses one of another size). Pixels at 16 px:
# a 768-d vector keeps the L-BFGS linear probe in minutes (3,072-d ran > 10 min on fashion-mnist).
floors = ["random:rils_vit_tiny_patch8@32", "pixels:16"]
# The upper anchor: a publicly pre-trained DINOv2-class ViT-S/14 (`rils-bench data prepare dinov2-s14`). It gets the
# dense probes and the dense fine-tuning; not the classification evaluations, whose 518-px native size takes hours
# per set on a CPU.
anchors = ["reference:dinov2-s14"]

evaluation = dict(
    datasets=["fashion-mnist", "animal-mnist", "emoji-styles"],
    in_domain=["fashion-mnist", "animal-mnist"],  # their images are in the pre-training pairs
    shots=[1, 2, 4, 8, 16],
    probe_seeds=5,
    # Linear probe and kNN memory bank on at most this many train images per class (fashion-mnist has 6,000): the
    # full 60k-image train split would take ~3 min of feature extraction per checkpoint.
    train_per_class=1000,
    retrieval="retrieval",  # built-in held-out pairs (emoji, tuxpaint); methods with a text tower only
    batch_size=256,
    # Frozen dense probes on pasteade (rils-bench segprobe / segknn), every encoder at 128 px: the 32-px ViT-Ti/8 then
    # sees a 16 x 16 patch grid. Measured on a 2-core AMD EPYC (avx512_bf16): 54 s + 32 s per checkpoint.
    dense_probes=dict(dataset="pasteade", image_size=128, tasks=["segprobe", "segknn"], head_seeds=3),
)

# `--dense` / `make study-dense`: Mask R-CNN (pastecoco) and UperNet (pasteade) fine-tuning with the tiny dense
# configs (rils-bench dense; `max_iters` None = their own schedules) of the checkpoints of pre-training seed 0, the
# random floor and the anchor. Measured on a 2-core AMD EPYC (avx512_bf16, no AMX) at 5a78221: ade ~8 min per
# checkpoint (reference 487 s, random 512 s); coco's 1,000 iterations ~0.5 s each. 7 checkpoints x 2 tasks is then
# about 2 h, twice the hour the stage is meant to take (at bfcc837, AMX Xeon, old ade recipe: 132 min for 6).
dense = dict(tasks=["coco", "ade"], max_iters=None, seeds=[0])

# Pre-training work dirs (checkpoints, logs) live outside the repo; results/ gets the records, the run files
# (checkpoint hash, settings, loss curves) and the tables.
work_dir = "~/.cache/rils_bench/study/default"
results = "results"

# `--quick`: every stage, every method and floor, on the real path at the smallest size (CI): 3 pre-training steps
# on the built-in pairs, then the probes and the dense fine-tuning on the drawn `shapes` set (16 val images; coco and
# ade layouts). Replaces the keys it names.
quick = dict(
    images_seen=48,  # 3 steps of 16
    batch_size=16,
    evaluation=dict(
        datasets=["shapes"],
        in_domain=["shapes"],
        shots=[1, 2],
        probe_seeds=2,
        train_per_class=4,
        retrieval="shapes",
        dense_probes=dict(dataset="shapes", image_size=64, head_seeds=1),
    ),
    dense=dict(max_iters=2, data_roots=dict(coco="shapes/coco", ade="shapes/ade")),
    anchors=[],  # CI: the reference's path is tested on its own (tests/study/test_stages.py, tests/adapters)
    work_dir="~/.cache/rils_bench/study/default-quick",
    results="~/.cache/rils_bench/study/default-quick/results",
)
