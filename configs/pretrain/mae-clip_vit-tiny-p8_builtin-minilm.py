# MAE+CLIP baseline on the built-in pairs with a pre-trained, locked MiniLM text tower.
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/mae_clip.py", "./_base_/text/minilm.py"]

model = dict(arch={{_base_.arch}}, text={{_base_.text_tower}})
