"""`pastecoco` and `pasteade`: real RGBA cut-outs pasted onto crops of real photos, one generator, two formats.

Cut-outs are Tux Paint stamps that are photos with an alpha channel (the drawn `cartoon/` stamps are
left out) and Twitter emoji, grouped into the 14 classes of `CLASSES`; backgrounds are random crops of
the photos that ship inside scikit-image. The same seed gives the same scenes in both sets.

Hold-out: within every (class, source) pair a seeded quarter of the cut-out *items* is kept for val,
so no val scene shows a cut-out that a train scene shows. Background photos are shared by both
splits (different random crops): there are too few of them to split.

pastecoco (mmdet `CocoDataset` with `metainfo=dict(classes=<classes.json>)`, `data_prefix=dict(img="train/")`)::

    train/000000.png ...  val/...  annotations/instances_{train,val}.json  classes.json

pasteade (mmseg `BaseSegDataset` with `img_suffix=".png"`, `seg_map_suffix=".png"`, `metainfo=dict(classes=...)`;
not `ADE20KDataset`, whose label mapping refuses class names that are not ADE20K's)::

    images/{training,validation}/000000.png  annotations/{training,validation}/000000.png  classes.json

Label convention of pasteade: label maps are uint8, 0 = background (no object), 1..14 = `CLASSES` in
order, the same ids as pastecoco's category ids; no pixel is 255. `classes.json` lists 15 names,
"background" first, for `reduce_zero_label=False` and `num_classes=15`: background is a class that is
trained and scored, because here it covers most pixels and object boundaries are what segmentation
is about. ADE20K's own convention (0 ignored) is the other way to read the same files: drop
"background" from the list and set `reduce_zero_label=True` (0 -> 255, k -> k - 1), `num_classes=14`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rils_bench.data.builtin import compose, sources
from rils_bench.data.builtin.spec import BuildContext, Counts
from rils_bench.data.builtin.writers import write_json

DEFAULTS: dict[str, Any] = {"n_train": 400, "n_val": 100, "image_size": 256, "max_objects": 6, "min_area": 64}

# Class name -> (Tux Paint stamp path prefixes, Twitter emoji subcategories). Chosen from the folders
# and subcategories that hold things one would photograph as a single object, each class with photo
# cut-outs (Tux Paint) and drawn ones (emoji), so that the hold-out leaves items of both in train and val.
CLASSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mammal": (("animals/mammals/", "animals/marsupials/"), ("animal-mammal",)),
    "bird": (("animals/birds/",), ("animal-bird",)),
    "sea animal": (("animals/fish/", "animals/shellfish/"), ("animal-marine",)),
    "bug": (("animals/insects/",), ("animal-bug",)),
    "reptile": (("animals/amphibians/", "animals/lizards/"), ("animal-reptile", "animal-amphibian")),
    "fruit": (("food/fruit/", "food/nuts/"), ("food-fruit",)),
    "vegetable": (("food/vegetables/", "plants/mushrooms/"), ("food-vegetable",)),
    "flower": (("plants/flowers/",), ("plant-flower",)),
    "plant": (("plants/trees/", "plants/lavender", "plants/thyme"), ("plant-other",)),
    "vehicle": (("vehicles/",), ("transport-ground", "transport-air", "transport-water")),
    "tool": (("household/tools/",), ("tool",)),
    "musical instrument": (("hobbies/music/",), ("musical-instrument",)),
    "sports gear": (("sports/",), ("sport",)),
    "clothing": (("clothes/",), ("clothing",)),
}
# Members of those folders/subcategories that are not an object of the class (signs, parts, weapons,
# jewellery, a nest ...): Tux Paint keys and emoji captions.
EXCLUDED = frozenset(
    {
        "vehicles/7spoke256.png", "vehicles/wheel_tractor.png", "vehicles/emergency/sedan_police.png",
        "sports/rugby_goal_posts.png", "sports/trophy_cup.png", "clothes/button.png",
        "clothes/clothespin_new.png", "clothes/clothespin_old.png",
        "paw prints", "pig nose", "feather", "wing", "spider web", "microbe", "empty nest", "nest with eggs",
        "mushroom", "station", "bus stop", "horizontal traffic light", "vertical traffic light",
        "construction sign", "police cars revolving light", "octagonal sign", "wheel", "oil drum", "motorway",
        "railway track", "fuel pump", "seat", "airplane departure", "airplane arriving", "satellite",
        "ring buoy", "anchor", "bomb", "link symbol", "dagger", "shield", "probing cane", "crossed swords",
        "balance scale", "gear", "broken chain", "chains", "bow and arrow", "lipstick", "ring", "gem stone",
        "prayer beads", "shopping bags", "folding hand fan", "hair pick", "flag in hole", "goal net",
    }
)  # fmt: skip
VAL_FRACTION = 0.25
# Photos in scikit-image's package data (no download). Chelsea and cat are the same photo, so only one.
BACKGROUNDS = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "text", "cell",
)  # fmt: skip
_SPLITS = {"train": ("train", "training", 0), "val": ("val", "validation", 1)}  # ours -> (coco, ade, rng stream)


def class_index(item: sources.Item) -> int | None:
    """Index into `CLASSES` of a Tux Paint photo stamp or a Twitter emoji; None if it belongs to no class."""
    if item.key in EXCLUDED or item.caption in EXCLUDED or "cartoon" in item.key.split("/"):
        return None
    for index, (prefixes, subcategories) in enumerate(CLASSES.values()):
        if item.source == "tuxpaint" and item.key.startswith(prefixes):
            return index
        if item.source.startswith("emoji") and item.subcategory in subcategories:
            return index
    return None


def usable(rgba: np.ndarray, alpha_threshold: int = 128) -> bool:
    """A real cut-out: >= 2% fully transparent pixels, and a mask that fills >= 8% of its tight box.

    Rejects opaque rectangles (the "musical keyboard" emoji) and stamps with next to no mask (a glass of
    water is all alpha < 128, goal posts are thin lines); thin tools such as a hammer (14%) pass.
    """
    alpha = rgba[..., 3]
    if np.mean(alpha == 0) < 0.02 or not np.any(alpha >= alpha_threshold):
        return False
    return bool(np.mean(compose.tight_crop(rgba, alpha_threshold)[..., 3] >= alpha_threshold) >= 0.08)


# Per class, per source (Tux Paint, emoji) that has items in the split: the cut-outs.
Pool = list[list[list[np.ndarray]]]


def cutout_pools(archives: dict[str, Path], seed: int, longest: int) -> dict[str, Pool]:
    """Per split: the usable cut-outs by class and source, tightly cropped and shrunk to at most `longest` px.

    Items are split within each (class, source) by a permutation drawn from `seed`; a quarter (at
    least one, when there are two or more) goes to val. Raises ValueError if a class ends up empty.
    """
    items = sources.tuxpaint_items(archives["tuxpaint-stamps-default"])
    items += sources.emoji_items(archives["emoji-datasource-twitter"], "twitter")
    groups: dict[tuple[int, str], list[np.ndarray]] = {}
    for item in items:  # sorted by key within a source, so the grouping is deterministic
        index = class_index(item)
        rgba = np.asarray(item.rgba()) if index is not None else None
        if rgba is None or not usable(rgba):
            continue
        groups.setdefault((index, item.source), []).append(_shrink(compose.tight_crop(rgba, 128), longest))
    pools: dict[str, Pool] = {split: [[] for _ in CLASSES] for split in _SPLITS}
    rng = np.random.default_rng([seed, 2])
    for (index, _source), cutouts in sorted(groups.items()):
        order = rng.permutation(len(cutouts))
        n_val = max(1, round(VAL_FRACTION * len(cutouts))) if len(cutouts) > 1 else 0
        for split, chosen in (("val", order[:n_val]), ("train", order[n_val:])):
            if len(chosen):
                pools[split][index].append([cutouts[i] for i in chosen])
    empty = [
        f"{name} ({split})" for split in pools for name, pool in zip(CLASSES, pools[split], strict=True) if not pool
    ]
    if empty:
        raise ValueError(f"no cut-outs for: {', '.join(empty)}")
    return pools


def _shrink(rgba: np.ndarray, longest: int) -> np.ndarray:
    # Shrinking once here keeps every later per-scene resize small (some stamps are 2,000 px tall).
    return compose.resize_longest(rgba, longest) if max(rgba.shape[:2]) > longest else rgba


def background_photos() -> list[np.ndarray]:
    """The `BACKGROUNDS` photos as RGB uint8 arrays, in that order (grey ones repeated over 3 channels)."""
    from skimage import data

    photos = []
    for name in BACKGROUNDS:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        photos.append(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    return photos


def random_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (half to all of the shorter side), resized to `size`, flipped half the time."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
    crop = np.asarray(crop)
    return crop[:, ::-1].copy() if rng.random() < 0.5 else crop


def scenes(
    pool: Pool, photos: list[np.ndarray], n: int, rng: np.random.Generator, options: dict[str, Any]
) -> Iterator[compose.Scene]:
    """`n` scenes: a background crop and 1..max_objects cut-outs.

    Each cut-out is of a uniformly drawn class, then source, then item: photos and emoji are pasted
    equally often although emoji are the more numerous items.
    """
    for _ in range(n):
        background = random_crop(photos[int(rng.integers(len(photos)))], options["image_size"], rng)
        classes = rng.integers(len(pool), size=int(rng.integers(1, options["max_objects"] + 1)))
        cutouts = [(_draw(_draw(pool[c], rng), rng), int(c) + 1) for c in classes]
        yield compose.compose(background, cutouts, rng, min_area=options["min_area"])


def _draw(options: list, rng: np.random.Generator) -> Any:
    return options[int(rng.integers(len(options)))]


def _split_streams(ctx: BuildContext) -> dict[str, tuple[Iterator[compose.Scene], int]]:
    """Per split: its lazy scene stream and length.

    Each split draws from its own random stream, so changing n_train does not change the val scenes.
    """
    pools = cutout_pools(ctx.archives, ctx.seed, ctx.options["image_size"])
    photos = background_photos()
    streams = {}
    for split, (_, _, stream) in _SPLITS.items():
        n, rng = ctx.options[f"n_{split}"], np.random.default_rng([ctx.seed, stream])
        streams[split] = (scenes(pools[split], photos, n, rng, ctx.options), n)
    return streams


def build_coco(ctx: BuildContext) -> Counts:
    """Write pastecoco under `ctx.out`; returns per split: images, instances, instances per class."""
    classes = list(CLASSES)
    write_json(ctx.out / "classes.json", classes)
    return {
        split: compose.write_coco_split(ctx.out, _SPLITS[split][0], classes, stream, n)
        for split, (stream, n) in _split_streams(ctx).items()
    }


def build_ade(ctx: BuildContext) -> Counts:
    """Write pasteade under `ctx.out`; returns per split: images, instances, labelled pixels per class."""
    write_json(ctx.out / "classes.json", ["background", *CLASSES])
    return {
        split: compose.write_ade_split(ctx.out, _SPLITS[split][1], list(CLASSES), stream, n)
        for split, (stream, n) in _split_streams(ctx).items()
    }
