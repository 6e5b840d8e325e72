"""Held-out image-text retrieval sets: only items that `split_of` puts on the "val" side of pre-training.

With the same seed and `val_fraction` as the `imagetext` set, no image and no caption here was seen in
pre-training: an emoji held out here is held out in every style (keys are style-free), a Tux Paint stamp
by its path. Subsets: `emoji` (emoji name -> Google-style image; pre-training saw only Twitter style)
and `tuxpaint` (caption <-> image). Each is `<subset>/pairs.csv` (id, filepath, caption) with
`filepath` relative to the subset folder, plus `<subset>/images/*.png` flattened on white.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from rils_bench.data.builtin import imagetext_set, sources
from rils_bench.data.builtin.spec import BuildContext, Counts
from rils_bench.data.builtin.writers import png_bytes, write_table

# One source of truth for the held-out fraction: the pre-training set's.
DEFAULTS = {"image_size": 64, "val_fraction": imagetext_set.DEFAULTS["val_fraction"]}
COLUMNS = ("id", "filepath", "caption")


def held_out(items: list[sources.Item], *, val_fraction: float, seed: int) -> list[sources.Item]:
    """The items that pre-training with the same `val_fraction` and `seed` keeps out of its train split."""
    return [it for it in items if sources.split_of(it.key, val_fraction=val_fraction, seed=seed) == "val"]


def write_subset(out: Path, pairs: list[tuple[sources.Item, str]], size: int) -> int:
    """Write `out/images/<id>.png` and `out/pairs.csv` (id = the item key, made file-name safe); returns rows."""
    rows = []
    for item, caption in tqdm(pairs, desc=f"writing {out.name}", unit="img", mininterval=1.0):
        ident = item.key.removesuffix(".png").replace("/", "__")
        relpath = f"images/{ident}.png"
        (out / relpath).parent.mkdir(parents=True, exist_ok=True)
        (out / relpath).write_bytes(png_bytes(sources.flatten(imagetext_set.item_picture(item), size)))
        rows.append({"id": ident, "filepath": relpath, "caption": caption})
    return write_table(out / "pairs.csv", rows, COLUMNS)


def build(ctx: BuildContext) -> Counts:
    """Write the `emoji` and `tuxpaint` subsets; returns `{subset: n_pairs}`.

    Captions are the ones pre-training uses for the same kind of item (`imagetext_set.emoji_caption`,
    the stamp's English description), so only the held-out items differ, not the caption style.
    """
    opts = ctx.options
    split = {"val_fraction": opts["val_fraction"], "seed": ctx.seed}
    emoji = held_out(sources.emoji_items(ctx.archives["emoji-datasource-google"], "google"), **split)
    stamps = held_out(sources.tuxpaint_items(ctx.archives["tuxpaint-stamps-default"]), **split)
    size = opts["image_size"]
    return {
        "emoji": write_subset(ctx.out / "emoji", [(it, imagetext_set.emoji_caption(it)) for it in emoji], size),
        "tuxpaint": write_subset(ctx.out / "tuxpaint", [(it, imagetext_set.stamp_caption(it)) for it in stamps], size),
    }
