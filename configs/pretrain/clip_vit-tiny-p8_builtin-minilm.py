# CLIP baseline on the built-in pairs with a pre-trained, locked MiniLM text tower (LiT-style).
_base_ = ["./_base_/builtin_tiny.py", "./_base_/methods/clip.py", "./_base_/text/minilm.py"]

model = dict(arch={{_base_.arch}}, text={{_base_.text_tower}})
