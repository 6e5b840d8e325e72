# A pre-trained, locked sentence encoder as the text tower (LiT-style): all-MiniLM-L6-v2, mean pooling, a trainable
# linear projection into the joint space. Prepared offline by `rils-bench data prepare minilm` (a missing copy is
# named in one line). text_unlocked_layers=n tunes its last n layers; text_lock=False tunes all of it (checkpoints
# then carry it). A config uses it as `model = dict(..., text={{_base_.text_tower}})`.
text_tower = dict(text_tower="hf", hf_model="minilm", hf_pooler="mean_pooler", text_lock=True, text_unlocked_layers=0)
