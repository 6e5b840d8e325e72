"""Copy-paste scene composition: RGBA cut-outs pasted onto a background, with exact instance masks.

Independent of where the cut-outs come from (Tux Paint photos, emoji, drawn shapes): a cut-out is an
RGBA uint8 array and a class id (>= 1). Objects are pasted in order, each occluding those before it.
A pixel belongs to the top-most object whose alpha reaches the threshold there; the semantic map
holds that object's class id, 0 where no object is.

Heavy occlusion is resolved by *rejecting* the occluding paste (and retrying elsewhere) rather than
by dropping the occluded object's remnant afterwards: a dropped remnant would still be visible in the
image while labelled background, a false negative baked into the ground truth. So every instance
keeps at least `min_area` pixels and `min_visible` of its own mask, and every object pixel in the
image belongs to an annotated instance.

`write_coco_split` and `write_ade_split` write scenes in the two formats the mm* dataset classes read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from rils_bench.data.builtin.writers import write_json, write_png

BACKGROUND = 0  # semantic-map value of pixels that belong to no object


@dataclass(frozen=True)
class Scene:
    """One composed image and its ground truth.

    `masks[i]` is the visible (occlusion-resolved) mask of instance i, in paste order; masks are
    pairwise disjoint and `semantic == class_ids[i]` on `masks[i]`, `BACKGROUND` elsewhere.
    """

    image: np.ndarray  # [H, W, 3] uint8
    masks: np.ndarray  # [N, H, W] bool
    class_ids: np.ndarray  # [N] int64, >= 1
    semantic: np.ndarray  # [H, W] uint8


def tight_crop(rgba: np.ndarray, alpha_threshold: int = 1) -> np.ndarray:
    """Crop an RGBA array to the bounding box of its pixels with alpha >= `alpha_threshold`.

    Raises:
        ValueError: no pixel reaches the threshold (an empty cut-out).
    """
    ys, xs = np.nonzero(rgba[..., 3] >= alpha_threshold)
    if ys.size == 0:
        raise ValueError("cut-out has no visible pixel")
    return rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def resize_longest(rgba: np.ndarray, longest: int) -> np.ndarray:
    """Resize so that the longer side is `longest` pixels, keeping the aspect ratio.

    PIL resamples RGBA with premultiplied alpha, so transparent pixels do not bleed colour into edges.
    """
    h, w = rgba.shape[:2]
    factor = longest / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(rgba, "RGBA").resize(size, Image.Resampling.BILINEAR))


def compose(
    background: np.ndarray,
    cutouts: Sequence[tuple[np.ndarray, int]],
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.2, 0.55),
    alpha_threshold: int = 128,
    min_area: int = 64,
    min_visible: float = 0.5,
    tries: int = 8,
) -> Scene:
    """Paste `cutouts` onto `background` in order, at seeded random scales, flips and positions.

    Args:
        background: [H, W, 3] uint8; not modified.
        cutouts: `(rgba [h, w, 4] uint8, class id >= 1)`, pasted in this order (later ones on top).
        rng: the only source of randomness.
        scale: range of the pasted longer side, as a fraction of the image's shorter side.
        alpha_threshold: alpha at or above which a pixel belongs to the object's mask.
        min_area: fewest mask pixels any instance may keep, its own and after occlusion.
        min_visible: smallest fraction of its own mask an instance keeps once later objects cover it.
        tries: placements drawn per cut-out before it is skipped (it would hide others too much).

    Returns:
        The scene; `len(scene.class_ids) <= len(cutouts)`, fewer when a cut-out found no valid place.
    """
    min_area = max(1, min_area)  # an empty mask has no bbox and would be no instance at all
    image = background.copy()
    owner = np.full(background.shape[:2], -1, np.int32)  # index of the top-most instance, -1 = none
    areas: list[int] = []  # each instance's own (unoccluded) mask area
    class_ids: list[int] = []
    for rgba, class_id in cutouts:
        if class_id < 1:
            raise ValueError(f"class id must be >= 1 (0 is background), got {class_id}")
        for _ in range(tries):
            piece, y, x = _propose(rgba, background.shape[:2], rng, scale)
            mask = piece[..., 3] >= alpha_threshold
            region = owner[y : y + mask.shape[0], x : x + mask.shape[1]]
            if mask.sum() >= min_area and _keeps_enough(region[mask], owner, areas, min_area, min_visible):
                _blend(image, piece, y, x)
                region[mask] = len(areas)
                areas.append(int(mask.sum()))
                class_ids.append(class_id)
                break
    return _scene(image, owner, np.asarray(class_ids, np.int64))


def _propose(
    rgba: np.ndarray, hw: tuple[int, int], rng: np.random.Generator, scale: tuple[float, float]
) -> tuple[np.ndarray, int, int]:
    """A random scale, horizontal flip and top-left corner that keeps the piece inside the image."""
    longest = max(1, round(rng.uniform(*scale) * min(hw)))
    piece = resize_longest(rgba, longest)
    if rng.random() < 0.5:
        piece = piece[:, ::-1]
    y = int(rng.integers(0, hw[0] - piece.shape[0] + 1))
    x = int(rng.integers(0, hw[1] - piece.shape[1] + 1))
    return piece, y, x


def _keeps_enough(covered: np.ndarray, owner: np.ndarray, areas: list[int], min_area: int, frac: float) -> bool:
    """Whether every earlier instance keeps enough pixels when the owners in `covered` are painted over."""
    if not areas:
        return True
    visible = np.bincount(owner[owner >= 0], minlength=len(areas))
    lost = np.bincount(covered[covered >= 0], minlength=len(areas))
    left = visible - lost
    return bool(np.all(left >= min_area) and np.all(left >= frac * np.asarray(areas)))


def _blend(image: np.ndarray, piece: np.ndarray, y: int, x: int) -> None:
    """Alpha-blend `piece` onto `image` in place; partial alpha at the edges keeps them soft."""
    h, w = piece.shape[:2]
    alpha = piece[..., 3:4].astype(np.float32) / 255.0
    region = image[y : y + h, x : x + w].astype(np.float32)
    image[y : y + h, x : x + w] = np.rint(alpha * piece[..., :3] + (1.0 - alpha) * region).astype(np.uint8)


def _scene(image: np.ndarray, owner: np.ndarray, class_ids: np.ndarray) -> Scene:
    masks = owner[None] == np.arange(len(class_ids))[:, None, None]
    lookup = np.concatenate([[BACKGROUND], class_ids]).astype(np.uint8)  # owner -1 -> background
    return Scene(image=image, masks=masks, class_ids=class_ids, semantic=lookup[owner + 1])


# ---------------------------------------------------------------------------------------------------------------------
# Writing scenes: COCO instances (mmdet) and an ADE20K-style tree (mmseg)


def mask_bbox(mask: np.ndarray) -> list[int]:
    """COCO `[x, y, w, h]` of a non-empty boolean mask: the smallest box holding every mask pixel."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def coco_annotations(scene: Scene, image_id: int, first_id: int) -> list[dict]:
    """One COCO annotation per instance: RLE mask (counts as str), bbox and area of that mask, iscrowd 0."""
    from pycocotools import mask as mask_utils

    annotations = []
    for i, (mask, class_id) in enumerate(zip(scene.masks, scene.class_ids, strict=True)):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append(
            {
                "id": first_id + i,
                "image_id": image_id,
                "category_id": int(class_id),
                "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "area": int(mask.sum()),
                "bbox": mask_bbox(mask),
                "iscrowd": 0,
            }
        )
    return annotations


def write_coco_split(
    root: Path, split: str, classes: Sequence[str], scenes: Iterable[Scene], total: int | None = None
) -> dict:
    """Write `root/<split>/<NNNNNN>.png` and `root/annotations/instances_<split>.json`.

    Category ids are 1..len(classes) in `classes` order (the scenes' class ids); image ids start at 1.
    Returns counts: images, instances, and instances per class name.
    """
    images, annotations = [], []
    for index, scene in enumerate(tqdm(scenes, total=total, desc=f"coco {split}", unit="img")):
        file_name = f"{index:06d}.png"
        write_png(root / split / file_name, scene.image)
        h, w = scene.image.shape[:2]
        images.append({"id": index + 1, "file_name": file_name, "height": h, "width": w})
        annotations += coco_annotations(scene, index + 1, len(annotations) + 1)
    categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)]
    write_json(
        root / "annotations" / f"instances_{split}.json",
        {"images": images, "annotations": annotations, "categories": categories},
    )
    ids = np.asarray([a["category_id"] for a in annotations], np.int64)
    per_class = np.bincount(ids, minlength=len(classes) + 1)[1:]
    return {
        "images": len(images),
        "instances": len(annotations),
        "per_class": dict(zip(classes, per_class.tolist(), strict=True)),
    }


def write_ade_split(
    root: Path, split: str, classes: Sequence[str], scenes: Iterable[Scene], total: int | None = None
) -> dict:
    """Write `root/images/<split>/<NNNNNN>.png` and the uint8 label map `root/annotations/<split>/<NNNNNN>.png`.

    Label values are 0 (background) and the class ids 1..len(classes). Returns counts: images,
    instances, and labelled pixels per class name (background included).
    """
    pixels = np.zeros(len(classes) + 1, np.int64)
    n_images = n_instances = 0
    for index, scene in enumerate(tqdm(scenes, total=total, desc=f"ade {split}", unit="img")):
        write_png(root / "images" / split / f"{index:06d}.png", scene.image)
        write_png(root / "annotations" / split / f"{index:06d}.png", scene.semantic)
        pixels += np.bincount(scene.semantic.ravel(), minlength=len(classes) + 1)[: len(classes) + 1]
        n_images += 1
        n_instances += len(scene.class_ids)
    names = ["background", *classes]
    return {
        "images": n_images,
        "instances": n_instances,
        "pixels_per_class": dict(zip(names, pixels.tolist(), strict=True)),
    }
