"""Classification sets written as ImageNet-style trees, so a user's `--data-root /path/to/imagenet` reads the same way.

Layout: `train/<NN>_<slug>/<id>.png`, `val/<NN>_<slug>/<id>.png` and `classnames.json`. `NN` is the
zero-padded class index, so the sorted folder order (what torchvision's `ImageFolder` uses) is the label
order, and `classnames.json` lists the human class names (for zero-shot prompts) in that same order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from rils_bench.data.builtin import sources
from rils_bench.data.builtin.spec import BuildContext, Counts
from rils_bench.data.builtin.writers import png_bytes, slug, write_json

ANIMAL_DEFAULTS = {"val_fraction": 0.2}
# label: "category" (9 classes) or "subcategory" (~100, fine-grained); classes with fewer than
# `min_per_class` images in either style are dropped (only subcategories are that small).
EMOJI_DEFAULTS = {"image_size": 64, "label": "category", "min_per_class": 10}
CLASSNAMES = "classnames.json"

Sample = tuple[int, str, Image.Image | np.ndarray]  # (label, file stem, image)


def class_folders(classnames: Sequence[str]) -> list[str]:
    """`["00_t_shirt_top", "01_trouser", ...]`: index-prefixed so sorted order is label order."""
    width = max(2, len(str(len(classnames) - 1)))
    return [f"{i:0{width}d}_{slug(name)}" for i, name in enumerate(classnames)]


def write_imagefolder(
    out: Path, classnames: Sequence[str], splits: dict[str, tuple[Iterable[Sample], int]]
) -> dict[str, dict[str, int]]:
    """Write `classnames.json` and, per split, every `(label, stem, image)` as `<split>/<folder>/<stem>.png`.

    `splits` maps a split name to its samples and their number (for the progress bar). Returns
    `{split: {classname: count}}` with every class present, zero counts included.
    """
    folders = class_folders(classnames)
    write_json(out / CLASSNAMES, list(classnames))
    counts = {}
    for split, (samples, total) in splits.items():
        for folder in folders:
            (out / split / folder).mkdir(parents=True, exist_ok=True)
        per_class: Counter[int] = Counter()
        for label, stem, image in tqdm(samples, total=total, desc=f"writing {split}", unit="img", mininterval=1.0):
            # Writing bytes directly (the class folders exist): this loop runs 70k times for Fashion-MNIST.
            (out / split / folders[label] / f"{stem}.png").write_bytes(png_bytes(image))
            per_class[label] += 1
        counts[split] = {name: per_class[i] for i, name in enumerate(classnames)}
    return counts


def _array_samples(images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> Iterable[Sample]:
    width = len(str(len(images) - 1))
    return ((int(labels[i]), f"{i:0{width}d}", images[i]) for i in indices)


def build_fashion_mnist(ctx: BuildContext) -> Counts:
    """Fashion-MNIST with its official split (60000 train / 10000 val), 28x28 gray PNG, file stem = index."""
    data = sources.fashion_mnist(ctx.archives["dataset-fashion-mnist"])
    splits = {
        split: (_array_samples(images, labels, np.arange(len(images))), len(images))
        for split, (images, labels) in data.items()
    }
    return write_imagefolder(ctx.out, sources.FASHION_CLASSES, splits)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train indices, val indices)`, both sorted: per class, a seeded permutation's first round(n*f) go to val."""
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):  # sorted, so the RNG is consumed in the same order every time
        members = np.flatnonzero(labels == label)
        val.append(rng.permutation(members)[: round(len(members) * val_fraction)])
    val_idx = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx


def build_animal_mnist(ctx: BuildContext) -> Counts:
    """Animal-MNIST (10 x 1000 silhouettes) with a seeded stratified split; file stem = index in the package."""
    images, labels, classnames = sources.animal_mnist(ctx.archives["animal-mnist"])
    train, val = stratified_split(labels, ctx.options["val_fraction"], ctx.seed)
    splits = {
        "train": (_array_samples(images, labels, train), len(train)),
        "val": (_array_samples(images, labels, val), len(val)),
    }
    return write_imagefolder(ctx.out, classnames, splits)


def emoji_class(item: sources.Item, label: str) -> str:
    """The class name of an emoji: its category ("Smileys & Emotion") or subcategory ("face smiling")."""
    if label == "category":
        return item.category
    if label == "subcategory":
        return item.subcategory.replace("-", " ")
    raise ValueError(f"emoji-styles: label must be 'category' or 'subcategory', got {label!r}")


def build_emoji_styles(ctx: BuildContext) -> Counts:
    """Emoji classes, trained on Twitter-style images and validated on Google-style ones (a real domain shift).

    Both styles hold the same emoji (same keys), flattened on white at `image_size`. Classes with fewer than
    `min_per_class` images in either style are dropped; the dropped names are returned under "dropped".
    Class order: sorted class names. File stem: the emoji's code points ("1f600").
    """
    opts = ctx.options
    styles = {
        "train": sources.emoji_items(ctx.archives["emoji-datasource-twitter"], "twitter"),
        "val": sources.emoji_items(ctx.archives["emoji-datasource-google"], "google"),
    }
    per_split = {split: Counter(emoji_class(it, opts["label"]) for it in items) for split, items in styles.items()}
    every = set(per_split["train"]) | set(per_split["val"])
    classnames = sorted(c for c in every if min(n[c] for n in per_split.values()) >= opts["min_per_class"])
    index = {name: i for i, name in enumerate(classnames)}

    def samples(items: list[sources.Item]) -> Iterable[Sample]:
        for it in items:
            name = emoji_class(it, opts["label"])
            if name in index:
                yield index[name], it.key.removesuffix(".png"), sources.flatten(it.rgba(), opts["image_size"])

    splits = {split: (samples(items), sum(per_split[split][c] for c in classnames)) for split, items in styles.items()}
    counts = write_imagefolder(ctx.out, classnames, splits)
    return {**counts, "dropped": sorted(every - set(classnames))}
