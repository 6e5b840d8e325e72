# The sentence-encoder rows of the comparison study: RILS and CLIP with the locked, pre-trained MiniLM text tower
# (issue 16), at the default study's budget, seeds, floors and evaluations, into the same results/ (the summary
# gains their rows; the floors, already recorded, are skipped). Run after `make study`:
#   rils-bench study configs/study/minilm.py
_base_ = ["./default.py"]

methods = dict(
    _delete_=True,
    rils_minilm="configs/pretrain/rils_vit-tiny-p8_builtin-minilm.py",
    clip_minilm="configs/pretrain/clip_vit-tiny-p8_builtin-minilm.py",
)
