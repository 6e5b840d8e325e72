"""`shapes`: coloured shapes drawn on noisy backgrounds, in every format the real sets use; no download at all.

For unit tests of everything downstream. One directory holds::

    imagefolder/{train,val}/<NN>_<shape>/*.png   imagefolder/classnames.json   (one shape per image)
    imagetext/{train,val}.csv (filepath,caption,source)   imagetext/{train,val}/*.png
    imagetext/shards/{train,val}-%06d.tar                                      (the same pairs as shards)
    coco/...  ade/...   (several shapes per image, the same layout and conventions as pastecoco / pasteade)

Captions name the colour and the shape ("a red circle"). Class k of the imagefolder is `SHAPES[k]`;
COCO category / ADE label k + 1 is the same shape (ADE label 0 = background, see `paste`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from rils_bench.data.builtin import compose
from rils_bench.data.builtin.spec import BuildContext, Counts
from rils_bench.data.builtin.writers import png_bytes, slug, write_json, write_png, write_table, write_wds_shards

DEFAULTS: dict[str, Any] = {"n_train": 40, "n_val": 16, "image_size": 64}
SHAPES = ("circle", "square", "triangle", "diamond", "hexagon", "star", "cross", "ring")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
MIN_AREA = 16  # mask pixels; a shape pasted at 64 px is 13 px across at the smallest scale
_SPLITS = {"train": ("train", "training", 0), "val": ("val", "validation", 1)}  # ours -> (coco, ade, stream)
_DRAW_SIZE = 96  # shapes are drawn once at this size, then scaled by the compositor


def _regular(n: int, radius: float, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(0.5 + radius * math.cos(phase + 2 * math.pi * k / n), 0.5 + radius * math.sin(phase + 2 * math.pi * k / n))
            for k in range(n)]  # fmt: skip


def _outline(shape: str) -> list[tuple[float, float]] | None:
    """The polygon of `shape` in the unit square; None for the round shapes."""
    if shape == "square":
        return [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
    if shape == "triangle":
        return [(0.5, 0.05), (0.95, 0.9), (0.05, 0.9)]
    if shape == "diamond":
        return [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)]
    if shape == "hexagon":
        return _regular(6, 0.5, 0.0)
    if shape == "star":
        outer, inner = _regular(5, 0.5), _regular(5, 0.2, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if shape == "cross":
        a, b = 0.32, 0.68
        return [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)]
    return None


def draw_shape(shape: str, colour: tuple[int, int, int], size: int = _DRAW_SIZE) -> np.ndarray:
    """An RGBA [size, size, 4] uint8 drawing of `shape` (one of `SHAPES`) in `colour`; alpha is 0 or 255."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    alpha = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(alpha)
    last = size - 1
    polygon = _outline(shape)
    if polygon is not None:
        draw.polygon([(x * last, y * last) for x, y in polygon], fill=255)
    else:
        draw.ellipse((0, 0, last, last), fill=255)
        if shape == "ring":
            draw.ellipse((0.3 * last, 0.3 * last, 0.7 * last, 0.7 * last), fill=0)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = np.asarray(alpha)
    return compose.tight_crop(rgba)


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A grey vertical gradient with pixel noise, so that no shape colour matches it exactly."""
    top, bottom = rng.uniform(60, 200, size=2)
    ramp = np.linspace(top, bottom, size)[:, None, None]
    noise = rng.normal(0.0, 8.0, size=(size, size, 3))
    return np.clip(np.rint(ramp + noise), 0, 255).astype(np.uint8)


def _random_shape(rng: np.random.Generator, shape: int | None = None) -> tuple[int, str]:
    """(shape index, colour name), each uniform; the shape is drawn only when not given."""
    index = int(rng.integers(len(SHAPES))) if shape is None else shape
    return index, list(COLOURS)[int(rng.integers(len(COLOURS)))]


def single(size: int, rng: np.random.Generator, shape: int | None = None) -> tuple[np.ndarray, int, str]:
    """One image with one shape (of index `shape`, or a random one): `(image, shape index, caption)`."""
    index, colour = _random_shape(rng, shape)
    rgba = draw_shape(SHAPES[index], COLOURS[colour])
    scene = compose.compose(background(size, rng), [(rgba, index + 1)], rng, scale=(0.4, 0.9))
    return scene.image, index, f"a {colour} {SHAPES[index]}"


def multi(size: int, rng: np.random.Generator, max_objects: int = 4) -> compose.Scene:
    """A scene of 1..max_objects shapes; COCO/ADE class id = shape index + 1."""
    cutouts = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        index, colour = _random_shape(rng)
        cutouts.append((draw_shape(SHAPES[index], COLOURS[colour]), index + 1))
    return compose.compose(background(size, rng), cutouts, rng, min_area=MIN_AREA)


def _write_imagefolder(root: Path, n: dict[str, int], size: int, seed: int) -> Counts:
    """Class of sample i is i mod len(SHAPES): as balanced as n allows, deterministic counts."""
    folders = [f"{k:02d}_{slug(name)}" for k, name in enumerate(SHAPES)]
    write_json(root / "classnames.json", list(SHAPES))
    counts = {}
    for split, count in n.items():
        rng = np.random.default_rng([seed, 0, _SPLITS[split][2]])
        for i in range(count):
            image, index, _ = single(size, rng, shape=i % len(SHAPES))
            write_png(root / split / folders[index] / f"{i:06d}.png", image)
        counts[split] = {name: len(range(k, count, len(SHAPES))) for k, name in enumerate(SHAPES)}
    return counts


def _write_imagetext(root: Path, n: dict[str, int], size: int, seed: int) -> Counts:
    counts = {}
    for split, count in n.items():
        rng = np.random.default_rng([seed, 1, _SPLITS[split][2]])
        rows, samples = [], []
        for i in range(count):
            image, _, caption = single(size, rng)
            data = png_bytes(image)
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / f"{i:06d}.png").write_bytes(data)
            rows.append({"filepath": f"{split}/{i:06d}.png", "caption": caption, "source": "shapes"})
            samples.append((f"{split}-{i:06d}", data, caption))
        counts[split] = write_table(root / f"{split}.csv", rows, ("filepath", "caption", "source"))
        write_wds_shards(root / "shards" / f"{split}-%06d.tar", samples)
    return counts


def build(ctx: BuildContext) -> Counts:
    """Write all four formats under `ctx.out`; returns counts per format and split."""
    size, seed = ctx.options["image_size"], ctx.seed
    n = {split: ctx.options[f"n_{split}"] for split in _SPLITS}
    counts = {
        "imagefolder": _write_imagefolder(ctx.out / "imagefolder", n, size, seed),
        "imagetext": _write_imagetext(ctx.out / "imagetext", n, size, seed),
        "coco": {},
        "ade": {},
    }
    classes = list(SHAPES)
    write_json(ctx.out / "coco" / "classes.json", classes)
    write_json(ctx.out / "ade" / "classes.json", ["background", *classes])
    for split, (coco_split, ade_split, stream) in _SPLITS.items():
        # The COCO and ADE trees hold the same scenes: the same random stream generates both.
        coco_rng, ade_rng = (np.random.default_rng([seed, 2, stream]) for _ in range(2))
        coco_scenes = (multi(size, coco_rng) for _ in range(n[split]))
        ade_scenes = (multi(size, ade_rng) for _ in range(n[split]))
        counts["coco"][split] = compose.write_coco_split(ctx.out / "coco", coco_split, classes, coco_scenes, n[split])
        counts["ade"][split] = compose.write_ade_split(ctx.out / "ade", ade_split, classes, ade_scenes, n[split])
    return counts
