"""The built-in image-text pre-training set, written in the formats a user brings from a cluster.

Pairs: Twitter-style emoji (name + category phrasing), OpenClipArt (title + keywords), Tux Paint stamps
(their written English caption), and Fashion-/Animal-MNIST *train* images (a capped number per class)
captioned with open_clip's ImageNet prompt templates. Every picture is flattened on white at
`image_size`. Output: `images/<source>/...png`, `{train,val}.{csv,tsv}` (filepath, caption, source) and
WebDataset shards `shards/{train,val}-%06d.tar` holding exactly the same pairs, so the built-in path and a
LAION-style path are one code path. The split is `sources.split_of` per source item.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from PIL import Image
from tqdm import tqdm

from rils_bench.data.builtin import classify_sets, sources
from rils_bench.data.builtin.spec import BuildContext, Counts
from rils_bench.data.builtin.writers import png_bytes, write_table, write_wds_shards

# val_fraction is shared with retrieval_set (which imports it): the held-out items must be the same.
DEFAULTS = {"image_size": 64, "val_fraction": 0.05, "mnist_per_class": 300, "shard_size": 1000}
COLUMNS = ("filepath", "caption", "source")

# How an emoji's category reads inside a caption ("an emoji of a grinning face, a smiley (face smiling)").
EMOJI_CATEGORY_PHRASES = {
    "Smileys & Emotion": "a smiley",
    "People & Body": "a person or body part",
    "Animals & Nature": "an animal or plant",
    "Food & Drink": "food or drink",
    "Travel & Places": "a place or vehicle",
    "Activities": "an activity",
    "Objects": "an object",
    "Symbols": "a symbol",
    "Flags": "a flag",
}
# Words after which "a"/"an" would be wrong ("an emoji of two hearts", "an emoji of the horns").
_NO_ARTICLE = {"a", "an", "the", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "some"}
_MAX_KEYWORDS = 6
CROPPED_SOURCES = frozenset({"openclipart", "tuxpaint"})


@dataclass(frozen=True)
class Pair:
    """One image-text pair before writing: `load()` gives the source picture (decoded only when written)."""

    source: str
    key: str  # unique within source; also what `split_of` hashes
    relpath: str  # where the PNG goes, relative to the dataset directory
    caption: str
    load: Callable[[], Image.Image]


def with_article(noun: str) -> str:
    """Prefix "a"/"an" where English wants one: "grinning face" -> "a grinning face", "two hearts" unchanged."""
    first = noun.split(" ", 1)[0]
    if not first or first[0].isdigit() or first in _NO_ARTICLE:
        return noun
    return ("an " if first[0] in "aeiou" else "a ") + noun


def emoji_caption(item: sources.Item) -> str:
    """The name, then category and subcategory: "an emoji of a grinning face, a smiley (face smiling)"."""
    phrase = EMOJI_CATEGORY_PHRASES.get(item.category, item.category.lower())
    detail = f" ({item.subcategory.replace('-', ' ')})" if item.subcategory else ""
    return f"an emoji of {with_article(item.caption)}, {phrase}{detail}"


def clipart_caption(item: sources.Item) -> str:
    """The title, then up to 6 keywords: "clip art of Soviet shuttle, energy, vehicles, cccp, space, ussr"."""
    return ", ".join([f"clip art of {item.caption}", *item.keywords[:_MAX_KEYWORDS]])


def stamp_caption(item: sources.Item) -> str:
    """A Tux Paint stamp's own English description ("A frog."), as written."""
    return item.caption


def class_name_for_caption(name: str) -> str:
    """A class name as it reads in a sentence: "T-shirt/top" -> "t-shirt or top", "Bear" -> "bear"."""
    return name.lower().replace("/", " or ")


def item_picture(item: sources.Item) -> Image.Image:
    """An item's picture as this set shows it.

    Clip-art and stamps are cut to their visible pixels (clip-art is often drawn small on a whole page);
    emoji keep their frame (their size within it is part of the design, and Google-style copies share it).
    """
    image = item.rgba()
    return sources.crop_to_content(image) if item.source in CROPPED_SOURCES else image


def _item_pairs(items: list[sources.Item], caption: Callable[[sources.Item], str]) -> list[Pair]:
    return [
        Pair(it.source, it.key, f"images/{it.source}/{it.key}", caption(it), functools.partial(item_picture, it))
        for it in items
    ]


def _class_pairs(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    classnames: list[str],
    per_class: int,
    rng: np.random.Generator,
) -> list[Pair]:
    """`per_class` images per class drawn from the indices in `pool`, each with a randomly chosen template."""
    pairs = []
    for label, classname in enumerate(classnames):
        members = pool[labels[pool] == label]
        chosen = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False))
        for index in chosen.tolist():
            template = OPENAI_IMAGENET_TEMPLATES[rng.integers(len(OPENAI_IMAGENET_TEMPLATES))]
            pairs.append(
                Pair(
                    name,
                    f"{name}/{index}",
                    f"images/{name}/{index:05d}.png",
                    template(class_name_for_caption(classname)),
                    functools.partial(Image.fromarray, images[index]),
                )
            )
    return pairs


def collect_pairs(ctx: BuildContext) -> list[Pair]:
    """Every pair of the set, in a fixed order (source by source, items sorted by key)."""
    a, per_class = ctx.archives, ctx.options["mnist_per_class"]
    pairs = _item_pairs(sources.emoji_items(a["emoji-datasource-twitter"], "twitter"), emoji_caption)
    clipart = sources.openclipart_items(a["openclipart-png"], a["openclipart-svg"])
    pairs += _item_pairs(clipart, clipart_caption)
    pairs += _item_pairs(sources.tuxpaint_items(a["tuxpaint-stamps-default"]), stamp_caption)

    rng = np.random.default_rng(ctx.seed)
    images, labels = sources.fashion_mnist(a["dataset-fashion-mnist"])["train"]  # never the official test set
    pool = np.arange(len(labels))
    pairs += _class_pairs("fashion-mnist", images, labels, pool, list(sources.FASHION_CLASSES), per_class, rng)
    # Only animal-mnist's own train split (same seed and fraction as the "animal-mnist" set) may be seen.
    images, labels, classnames = sources.animal_mnist(a["animal-mnist"])
    pool, _ = classify_sets.stratified_split(labels, classify_sets.ANIMAL_DEFAULTS["val_fraction"], ctx.seed)
    pairs += _class_pairs("animal-mnist", images, labels, pool, classnames, per_class, rng)
    return pairs


def build(ctx: BuildContext) -> Counts:
    """Write images, CSV/TSV tables and WebDataset shards; returns `{split: {source: n}}`.

    The train rows are shuffled (seeded) so every shard mixes all sources; row `i` of `<split>.csv` is
    sample key `%06d` % i in the shards, and both hold the very same PNG bytes and caption.
    """
    opts = ctx.options
    pairs = collect_pairs(ctx)
    splits: dict[str, list[Pair]] = {"train": [], "val": []}
    for pair in pairs:
        splits[sources.split_of(pair.key, val_fraction=opts["val_fraction"], seed=ctx.seed)].append(pair)
    random.Random(ctx.seed).shuffle(splits["train"])

    counts = {}
    for split, members in splits.items():
        written = list(_write_images(ctx.out, members, opts["image_size"], split))
        rows = [{"filepath": p.relpath, "caption": p.caption, "source": p.source} for p, _ in written]
        for suffix in ("csv", "tsv"):
            write_table(ctx.out / f"{split}.{suffix}", rows, COLUMNS)
        samples = ((f"{i:06d}", png, p.caption) for i, (p, png) in enumerate(written))
        write_wds_shards(ctx.out / "shards" / f"{split}-%06d.tar", samples, maxcount=opts["shard_size"])
        counts[split] = dict(sorted(Counter(p.source for p in members).items()))
    return counts


def _write_images(out: Path, pairs: list[Pair], size: int, split: str) -> Iterator[tuple[Pair, bytes]]:
    """Flatten, encode and write each pair's image; yields `(pair, png bytes)` in order."""
    for pair in tqdm(pairs, desc=f"writing {split}", unit="img", mininterval=1.0):
        png = png_bytes(sources.flatten(pair.load(), size))
        path = out / pair.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        yield pair, png
