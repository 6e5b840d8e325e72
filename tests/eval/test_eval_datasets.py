"""`--dataset` resolution: built-in names, `imagefolder:PATH` in the ImageNet layout, retrieval pairs, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image

from rils_bench.data.builtin import prepare, shapes
from rils_bench.errors import UserError
from rils_bench.eval.datasets import folder_sha256, resolve_classification, resolve_retrieval


def write_folder(root, counts: dict[str, dict[str, int]]):
    """`root/<split>/<class>/<i>.png`, 8x8 gray images, `counts[split][class]` of each."""
    for split, per_class in counts.items():
        for folder, n in per_class.items():
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8), mode="L").save(root / split / folder / f"{i}.png")
    return root


def test_builtin_shapes(data_root):
    data = resolve_classification("shapes")
    assert data.name == "shapes" and data.root == data_root / "shapes" / "imagefolder"
    assert data.classnames == shapes.SHAPES and len(data.folders) == 8
    assert data.sha256 == prepare.read_manifest(data_root / "shapes")["content_sha256"]
    train, val = data.split("train"), data.split("val")
    assert len(train) == 40 and len(val) == 16
    assert np.bincount(train.labels).tolist() == [5] * 8 and np.bincount(val.labels).tolist() == [2] * 8
    assert all(p.parent.name == data.folders[label] for p, label in zip(val.paths, val.labels, strict=True))


def test_user_imagefolder_names_labels_and_hash(tmp_path):
    root = write_folder(
        tmp_path / "set", {"train": {"00_cat": 2, "01_hot_dog": 3}, "val": {"00_cat": 1, "01_hot_dog": 1}}
    )
    (root / "train" / "01_hot_dog" / "notes.txt").write_text("not an image")
    data = resolve_classification(f"imagefolder:{root}")
    assert data.name == "set" and data.classnames == ("cat", "hot dog")
    assert data.split("train").labels.tolist() == [0, 0, 1, 1, 1]
    (root / "classnames.json").write_text(json.dumps({"00_cat": "tabby cat", "01_hot_dog": "frankfurter"}))
    renamed = resolve_classification(f"imagefolder:{root}")
    assert renamed.classnames == ("tabby cat", "frankfurter") and renamed.sha256 != data.sha256
    path = root / "val" / "00_cat" / "0.png"
    path.write_bytes(path.read_bytes() + b"\0")
    assert folder_sha256(root) != renamed.sha256  # a rewritten file changes the hash


def test_imagenet_wordnet_folders_get_open_clip_names(tmp_path):
    for i in range(1000):
        (tmp_path / "train" / f"n{i:08d}").mkdir(parents=True)
    assert resolve_classification(f"imagefolder:{tmp_path}").classnames == tuple(IMAGENET_CLASSNAMES)


def test_empty_class_is_a_user_error(tmp_path):
    root = write_folder(tmp_path, {"train": {"a": 2, "b": 0}, "val": {"a": 1, "b": 1}})
    data = resolve_classification(f"imagefolder:{root}")
    with pytest.raises(UserError, match=r"empty class: .*train/b"):
        data.split("train")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown dataset 'nope'"),
        ("imagefolder:/does/not/exist", "image folder not found"),
    ],
)
def test_bad_dataset_specs(spec, message):
    with pytest.raises(UserError, match=message):
        resolve_classification(spec)


def test_split_with_other_classes_and_bad_classnames(tmp_path):
    root = write_folder(tmp_path, {"train": {"a": 1, "b": 1}, "val": {"a": 1, "c": 1}})
    with pytest.raises(UserError, match="class folders differ"):
        resolve_classification(f"imagefolder:{root}").split("val")
    (root / "classnames.json").write_text('["only one"]')
    with pytest.raises(UserError, match="one name per class folder"):
        resolve_classification(f"imagefolder:{root}")


def test_retrieval_pairs(data_root, tmp_path):
    (pairs,) = resolve_retrieval("shapes")
    assert pairs.name == "shapes-val" and len(pairs.paths) == len(pairs.captions) == 16
    assert pairs.paths[0] == data_root / "shapes" / "imagetext" / "val" / "000000.png"
    assert pairs.captions[0].startswith("a ")
    write_folder(tmp_path, {"imgs": {"x": 2}})
    (tmp_path / "p.csv").write_text("filepath,caption\nimgs/x/0.png,a dark square\nimgs/x/1.png,a grey square\n")
    (custom,) = resolve_retrieval(f"csv:{tmp_path / 'p.csv'}")
    assert custom.captions == ["a dark square", "a grey square"] and custom.paths[1] == tmp_path / "imgs/x/1.png"
    (tmp_path / "q.csv").write_text("filepath,caption\nimgs/x/9.png,missing\n")
    with pytest.raises(UserError, match="image not found"):
        resolve_retrieval(f"csv:{tmp_path / 'q.csv'}")
    with pytest.raises(UserError, match="unknown retrieval dataset"):
        resolve_retrieval("fashion-mnist")
