"""What a user passes as `--dataset`: a built-in set by name, or `imagefolder:/path/to/root` (ImageNet layout).

A classification set is a root with `train/` and `val/`, one folder per class in each (sorted folder order is
the label order, as torchvision's `ImageFolder`), and optionally `classnames.json` (a list aligned with the
sorted folders, or a `{folder: name}` dict). Without it, 1000 WordNet-id folders (`n01440764`, ...) get
open_clip's ImageNet class names; any other folder name is used as its class name (a leading `NN_` index and
underscores removed).

A retrieval set is a list of (image, caption) pairs, the i-th caption belonging to the i-th image.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from rils_bench.data.imagetext import ImageTextTable
from rils_bench.errors import UserError
from rils_bench.eval.features import cache_root
from rils_bench.fileio import tree_sha256

FOLDER_PREFIX = "imagefolder:"
# Built-in classification sets -> the sub-folder that holds the ImageNet-style tree.
CLASSIFICATION_SETS = {"fashion-mnist": "", "animal-mnist": "", "emoji-styles": "", "shapes": "imagefolder"}
# What an evaluation without `--dataset` runs on: every real built-in set (`shapes` is drawn, for unit tests only).
DEFAULT_CLASSIFICATION_SETS = ("fashion-mnist", "animal-mnist", "emoji-styles")
# Built-in retrieval sets -> {subset: (pairs csv relative to the dataset dir)}; file paths are relative to the csv.
RETRIEVAL_SETS = {
    "retrieval": {"emoji": "emoji/pairs.csv", "tuxpaint": "tuxpaint/pairs.csv"},
    "shapes": {"val": "imagetext/val.csv"},
}
_WNID = re.compile(r"n\d{8}")
_INDEX_PREFIX = re.compile(r"^\d+_")


@dataclass(frozen=True)
class LabelledImages:
    """Image files and their integer labels, in a fixed order (class folder, then file name)."""

    paths: list[Path]
    labels: np.ndarray  # [N] int64

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class ClassificationSet:
    """A resolved classification dataset: where it is, its class names, and the hash of its content."""

    name: str  # what records and tables call it
    spec: str  # what the user passed
    root: Path
    folders: tuple[str, ...]  # class folders, sorted: index = label
    classnames: tuple[str, ...]
    sha256: str  # built-in: the manifest's content hash; a user folder: hash of its file list, sizes, mtimes

    def split(self, split: str) -> LabelledImages:
        """Every image of `split` (`train` / `val`) with its label.

        Raises:
            UserError: the split is missing, its class folders differ from the dataset's, or a class is empty.
        """
        return scan_split(self.root, split, self.folders)


@dataclass(frozen=True)
class PairSet:
    """A resolved retrieval set: `captions[i]` describes `paths[i]`."""

    name: str
    spec: str
    paths: list[Path]
    captions: list[str]
    sha256: str


def resolve_classification(spec: str) -> ClassificationSet:
    """Resolve a built-in name (`fashion-mnist`, `animal-mnist`, `emoji-styles`, `shapes`) or `imagefolder:PATH`.

    A built-in set that is not prepared yet is prepared first (downloads are cached and hash-verified).

    Raises:
        UserError: unknown name, missing folder or split, no class folders, unreadable `classnames.json`.
    """
    if spec.startswith(FOLDER_PREFIX):
        root = Path(spec.removeprefix(FOLDER_PREFIX)).expanduser()
        if not _is_dir(root):
            raise UserError(f"image folder not found: {root}")
        name, sha = root.resolve().name, folder_sha256(root)
    elif spec in CLASSIFICATION_SETS:
        base = builtin_root(spec)
        root, name, sha = base / CLASSIFICATION_SETS[spec], spec, _manifest_sha256(base)
    else:
        known = ", ".join(sorted(CLASSIFICATION_SETS))
        raise UserError(f"unknown dataset {spec!r}; classification sets: {known}, or {FOLDER_PREFIX}/path/to/root")
    folders = class_folders(root)
    return ClassificationSet(name, spec, root, folders, read_classnames(root, folders), sha)


def resolve_retrieval(spec: str) -> list[PairSet]:
    """Resolve `retrieval` (subsets `emoji`, `tuxpaint`), `shapes` (its image-text val split) or `csv:PATH`.

    A CSV needs `filepath` and `caption` columns; file paths are relative to the CSV's folder.

    Raises:
        UserError: unknown name, missing CSV or columns, an empty CSV, a missing image.
    """
    if spec.startswith("csv:"):
        path = Path(spec.removeprefix("csv:")).expanduser()
        if not _is_dir(path.parent) or not path.is_file():
            raise UserError(f"pairs file not found: {path}")
        paths, captions = read_pairs(path)
        digest = folder_sha256(path.parent)
        return [PairSet(path.stem, spec, paths, captions, digest)]
    if spec not in RETRIEVAL_SETS:
        raise UserError(f"unknown retrieval dataset {spec!r}; known: {', '.join(sorted(RETRIEVAL_SETS))}, or csv:PATH")
    base = builtin_root(spec)
    sha = _manifest_sha256(base)
    sets = []
    for subset, relpath in RETRIEVAL_SETS[spec].items():
        paths, captions = read_pairs(base / relpath)
        sets.append(PairSet(f"{spec}-{subset}", spec, paths, captions, sha))
    return sets


def _is_dir(path: Path) -> bool:
    """`path.is_dir()`, with a path the file system cannot even look up (a name too long) as absent, not an error."""
    try:
        return path.is_dir()
    except OSError:
        return False


def builtin_root(name: str) -> Path:
    """The prepared directory of a built-in set; prepared now (default seed and options) if it is not yet."""
    from rils_bench.data.builtin import prepare

    return prepare.prepared(name)


def _manifest_sha256(base: Path) -> str:
    from rils_bench.data.builtin import prepare

    manifest = prepare.read_manifest(base)
    if not manifest or "content_sha256" not in manifest:
        raise UserError(f"{base} has no manifest with a content hash; run `rils-bench data prepare --force`")
    return manifest["content_sha256"]


def folder_sha256(root: Path) -> str:
    """Content hash of every file under `root` (relative paths and bytes; `rils_bench.fileio.tree_sha256`).

    Each file's hash is cached by size and modification time under `$RILS_BENCH_FEATURES/file-hashes/`, so an
    unchanged ImageNet-sized folder costs one `stat` per file after the first look, and `touch` changes nothing.
    """
    root = Path(root)
    cache = cache_root() / "file-hashes" / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json"
    return tree_sha256(root, cache=cache)


def class_folders(root: Path) -> tuple[str, ...]:
    """The sorted class folders of `root/train` (or `root/val` when there is no train split), as `ImageFolder`."""
    split_dir = next((root / s for s in ("train", "val") if (root / s).is_dir()), None)
    if split_dir is None:
        raise UserError(f"{root} has neither train/ nor val/ (expected the ImageNet layout: train/<class>/*.png)")
    return _find_classes(split_dir)


def _find_classes(split_dir: Path) -> tuple[str, ...]:
    try:
        return tuple(find_classes(split_dir)[0])
    except FileNotFoundError:
        raise UserError(f"{split_dir} has no class folders") from None


def read_classnames(root: Path, folders: tuple[str, ...]) -> tuple[str, ...]:
    """Class names aligned with `folders`: `classnames.json`, ImageNet's names for WordNet ids, or folder names."""
    path = root / "classnames.json"
    if path.is_file():
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise UserError(f"{path} is not valid JSON ({err})") from None
        if isinstance(names, dict):
            names = [names.get(f) for f in folders]
        if not isinstance(names, list) or len(names) != len(folders) or not all(isinstance(n, str) for n in names):
            raise UserError(f"{path} must list one name per class folder ({len(folders)}), or map each folder")
        return tuple(names)
    if len(folders) == 1000 and all(_WNID.fullmatch(f) for f in folders):
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return tuple(IMAGENET_CLASSNAMES)
    return tuple(_INDEX_PREFIX.sub("", f).replace("_", " ") for f in folders)


def scan_split(root: Path, split: str, folders: tuple[str, ...]) -> LabelledImages:
    """List `root/split/<folder>/*` images, labelled by the folder's index in `folders`.

    Raises:
        UserError: missing split, class folders that differ from `folders`, or a class folder without images.
    """
    split_dir = root / split
    if not split_dir.is_dir():
        raise UserError(f"{root} has no {split}/ split")
    present = _find_classes(split_dir)
    if present != folders:
        diff = sorted(set(present) ^ set(folders))[:3]
        raise UserError(f"{split_dir}: class folders differ from the dataset's classes (e.g. {diff})")
    samples = make_dataset(
        split_dir, {f: i for i, f in enumerate(folders)}, extensions=IMG_EXTENSIONS, allow_empty=True
    )
    counts = np.bincount([label for _, label in samples], minlength=len(folders))
    if not counts.all():
        raise UserError(f"image folder has an empty class: {split_dir / folders[int(np.argmin(counts))]}")
    paths = [Path(path) for path, _ in samples]
    return LabelledImages(paths, np.asarray([label for _, label in samples], dtype=np.int64))


def read_pairs(path: Path) -> tuple[list[Path], list[str]]:
    """`(image paths, captions)` from a CSV/TSV with `filepath` and `caption` columns (paths relative to it), read
    by the same `ImageTextTable` pre-training uses."""
    table = ImageTextTable(path)
    if not len(table):
        raise UserError(f"{path} holds no pairs")
    problem = next(filter(None, map(table.row_problem, range(len(table)))), None)
    if problem is not None:  # an evaluation set is scored whole: an incomplete row is refused, not skipped
        raise UserError(problem)
    missing = next((p for p in table.paths if not p.is_file()), None)
    if missing is not None:
        raise UserError(f"{path}: image not found: {missing}")
    return list(table.paths), list(table.captions)
