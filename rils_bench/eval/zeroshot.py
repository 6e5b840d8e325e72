"""Zero-shot classification: class-name prompts through the text tower, CLIP's prompt ensembling.

Each class's weight is the mean of its prompts' L2-normalised text embeddings, renormalised (open_clip's
`build_zero_shot_classifier`); an image goes to the class of highest cosine similarity with its normalised
`encode_image` embedding. Template sets: `openai` (CLIP's 80 ImageNet templates), `simple` (open_clip's 2), or
`auto`: the dataset's own short set where it has one (`DATASET_PROMPTS`), else `openai`. The built-in MNIST-style
sets were captioned for pre-training with the same 80 templates, so `auto` keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

from rils_bench.data.builtin.imagetext_set import EMOJI_CATEGORY_PHRASES, class_name_for_caption
from rils_bench.errors import UserError
from rils_bench.eval.datasets import resolve_classification
from rils_bench.eval.features import ExtractOptions, embed_texts, extract_features, precision_of, transform_of
from rils_bench.eval.metrics import accuracy_metrics, log_stderr, require_text_tower
from rils_bench.models.pretrained import load_pretrained
from rils_bench.models.registry import ImageTextEncoder
from rils_bench.report.record import make_record, write_record

Template = Callable[[str], str]
TEMPLATE_SETS: dict[str, tuple[Template, ...]] = {
    "openai": tuple(OPENAI_IMAGENET_TEMPLATES),
    "simple": tuple(SIMPLE_IMAGENET_TEMPLATES),
}
# Datasets whose class names need other wording: emoji categories read as pre-training's captions phrase them
# ("an emoji of ..., a smiley"), so the prompt names the phrase, not the category title.
DATASET_PROMPTS: dict[str, tuple[tuple[Template, ...], Callable[[str], str]]] = {
    "emoji-styles": (
        (lambda c: f"an emoji of {c}.", lambda c: f"an emoji, {c}.", lambda c: f"{c}."),
        lambda name: EMOJI_CATEGORY_PHRASES.get(name, name.lower()),
    ),
}


def template_set(dataset: str, templates: str = "auto") -> tuple[tuple[Template, ...], Callable[[str], str], str]:
    """`(templates, wording of a class name, name of the set)` for `dataset`: the class `c` gets the prompts
    `t(wording(c))`.

    Raises:
        UserError: an unknown template set.
    """
    if templates == "auto" and dataset in DATASET_PROMPTS:
        chosen, wording = DATASET_PROMPTS[dataset]
        return chosen, wording, f"{dataset} ({len(chosen)} templates)"
    if templates in TEMPLATE_SETS or templates == "auto":
        key = "openai" if templates == "auto" else templates
        return TEMPLATE_SETS[key], class_name_for_caption, f"{key} ({len(TEMPLATE_SETS[key])})"
    raise UserError(f"unknown template set {templates!r}; choose auto, {', '.join(TEMPLATE_SETS)}")


def prompts_for(dataset: str, classnames: Sequence[str], templates: str = "auto") -> tuple[list[list[str]], str]:
    """`(prompts per class, name of the template set)`; class names are worded as pre-training's captions word them.

    Raises:
        UserError: an unknown template set.
    """
    chosen, wording, name = template_set(dataset, templates)
    return [[t(wording(c)) for t in chosen] for c in classnames], name


@torch.inference_mode()
def text_classifier(
    encoder: ImageTextEncoder,
    prompts: Sequence[Sequence[str]],
    *,
    device: str | None = None,
    batch_size: int = 256,
    precision: str = "auto",
) -> np.ndarray:
    """`[C, E]` class weights: per class, the renormalised mean of its prompts' normalised text embeddings."""
    flat = [p for class_prompts in prompts for p in class_prompts]
    texts = embed_texts(encoder, flat, device=device, batch_size=batch_size, precision=precision)
    embedded = F.normalize(torch.from_numpy(texts), dim=1)
    weights = torch.stack([F.normalize(e.mean(0), dim=0) for e in embedded.split([len(p) for p in prompts])])  # [C, E]
    return weights.numpy()


def run_zeroshot(
    *,
    ckpt: str,
    dataset: str,
    templates: str = "auto",
    arch: str | None = None,
    options: ExtractOptions | None = None,
    records: Path | None = None,
    write: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, Any]:
    """Zero-shot top-1 (and top-5 with >= 5 classes) of `ckpt` on the val split of `dataset`; returns the record.

    Raises:
        UserError: bad dataset or checkpoint, an image-only checkpoint, an unknown template set.
    """
    if templates != "auto" and templates not in TEMPLATE_SETS:
        raise UserError(f"unknown template set {templates!r}; choose auto, {', '.join(TEMPLATE_SETS)}")
    encoder, info = load_pretrained(ckpt, arch=arch)
    require_text_tower(encoder, info, "zero-shot")
    data = resolve_classification(dataset)
    prompts, template_name = prompts_for(data.name, data.classnames, templates)
    val = data.split("val")
    images = extract_features(
        encoder, info, val.paths, dataset_sha256=data.sha256, split="val", feature="embed", options=options
    ).features
    options = options or ExtractOptions()
    weights = text_classifier(encoder, prompts, device=options.device, precision=options.precision)
    scores = F.normalize(torch.from_numpy(images), dim=1).numpy() @ weights.T  # [N, C] cosine similarities
    metrics = accuracy_metrics(scores, val.labels)
    log(f"zero-shot ({template_name} templates): top-1 {metrics['top1']:.2f}% on {len(val)} val images")
    record = make_record(
        checkpoint=info,
        precision=precision_of(options),
        task="zeroshot",
        dataset=data.name,
        split="val",
        setting=f"templates={templates}",
        metrics=metrics,
        dataset_sha256=data.sha256,
        hyperparameters={"templates": template_name, "example_prompt": prompts[0][0], "selection": "none (fixed)"},
        config={
            "feature": "embed (encode_image, normalised)",
            "n_val": len(val),
            "n_classes": len(prompts),
            "classnames": list(data.classnames),
            "transform": transform_of(encoder.config)[1],
            "dataset_spec": data.spec,
        },
    )
    if write:
        write_record(record, records)
    return record
