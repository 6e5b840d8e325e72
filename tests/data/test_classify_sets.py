"""The ImageNet-style classification sets, prepared for real from the cached source packages."""

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from rils_bench.data.builtin import classify_sets, fetch, prepare, sources
from rils_bench.data.builtin.writers import png_bytes

# Base emoji per category in emoji-datasource 16.0.0 (emoji.json, skin tones and "Component" excluded).
EMOJI_CATEGORIES = {
    "Activities": 85,
    "Animals & Nature": 159,
    "Flags": 270,
    "Food & Drink": 131,
    "Objects": 264,
    "People & Body": 386,
    "Smileys & Emotion": 169,
    "Symbols": 224,
    "Travel & Places": 218,
}


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("classify")


@pytest.fixture(scope="session")
def fashion(data_root):
    return prepare.prepare("fashion-mnist", root=data_root)


@pytest.fixture(scope="session")
def animal(data_root):
    return prepare.prepare("animal-mnist", root=data_root, seed=0)


@pytest.fixture(scope="session")
def emoji(data_root):
    return prepare.prepare("emoji-styles", root=data_root)


def _twitter():
    return sources.emoji_items(fetch.fetch(fetch.SOURCES["emoji-datasource-twitter"]), "twitter")


def stems(root, split):
    """`{class folder: {file stem, ...}}` as found on disk."""
    return {d.name: {p.stem for p in d.glob("*.png")} for d in sorted((root / split).iterdir())}


def assert_classnames_align_with_folders(root):
    classnames = json.loads((root / "classnames.json").read_text())
    for split in ("train", "val"):
        folders = sorted(d.name for d in (root / split).iterdir())
        assert folders == classify_sets.class_folders(classnames)
        assert [int(f.split("_", 1)[0]) for f in folders] == list(range(len(classnames)))
    return classnames


def test_class_folders_sort_in_label_order():
    names = [f"class {i}" for i in range(120)]
    folders = classify_sets.class_folders(names)
    assert folders[:2] == ["000_class_0", "001_class_1"] and folders[-1] == "119_class_119"
    assert sorted(folders) == folders
    assert classify_sets.class_folders(["T-shirt/top", "Bag"]) == ["00_t_shirt_top", "01_bag"]


@pytest.mark.slow  # prepares the set (once per session)
def test_fashion_mnist_official_counts_and_pixels(fashion):
    classnames = assert_classnames_align_with_folders(fashion)
    assert classnames == list(sources.FASHION_CLASSES)
    manifest = json.loads((fashion / "manifest.json").read_text())
    assert manifest["counts"] == {
        "train": dict.fromkeys(classnames, 6000),
        "val": dict.fromkeys(classnames, 1000),
    }
    on_disk = {split: {d: len(s) for d, s in stems(fashion, split).items()} for split in ("train", "val")}
    assert set(on_disk["train"].values()) == {6000} and set(on_disk["val"].values()) == {1000}
    # Index 0 of the official train file is an ankle boot: the PNG holds its exact pixels.
    official = sources.fashion_mnist(fetch.fetch(fetch.SOURCES["dataset-fashion-mnist"]))
    image = np.asarray(Image.open(fashion / "train" / "09_ankle_boot" / "00000.png"))
    np.testing.assert_array_equal(image, official["train"][0][0])
    assert (fashion / "val" / "02_pullover" / "0001.png").is_file()  # t10k label 2 at index 1


@pytest.mark.slow  # prepares the set (once per session)
def test_animal_mnist_stratified_disjoint_split(animal):
    assert_classnames_align_with_folders(animal)
    train, val = stems(animal, "train"), stems(animal, "val")
    assert {len(s) for s in train.values()} == {800} and {len(s) for s in val.values()} == {200}
    all_train, all_val = set().union(*train.values()), set().union(*val.values())
    assert not all_train & all_val
    assert all_train | all_val == {f"{i:04d}" for i in range(10000)}
    _, labels, _ = sources.animal_mnist(fetch.fetch(fetch.SOURCES["animal-mnist"]))
    for folder, members in val.items():  # every file sits in its own label's folder
        assert {int(labels[int(s)]) for s in members} == {int(folder[:2])}


@pytest.mark.slow  # prepares the set (once per session)
def test_animal_mnist_same_seed_same_bytes_other_seed_other_split(animal, tmp_path):
    again = prepare.prepare("animal-mnist", root=tmp_path / "again", seed=0)
    assert prepare.content_sha256(again) == prepare.content_sha256(animal)
    other = prepare.prepare("animal-mnist", root=tmp_path / "other", seed=1)
    val0, val1 = (set().union(*stems(root, "val").values()) for root in (animal, other))
    assert len(val1) == 2000 and val0 != val1


@pytest.mark.slow  # prepares the set (once per session)
def test_emoji_styles_train_twitter_val_google(emoji):
    classnames = assert_classnames_align_with_folders(emoji)
    assert classnames == sorted(set(EMOJI_CATEGORIES))
    train, val = stems(emoji, "train"), stems(emoji, "val")
    assert train == val  # the same emoji in the same classes, drawn in two styles
    assert sum(len(s) for s in train.values()) == 1906
    manifest = json.loads((emoji / "manifest.json").read_text())
    assert manifest["counts"]["train"] == manifest["counts"]["val"] == EMOJI_CATEGORIES
    assert manifest["counts"]["dropped"] == []

    folder = classify_sets.class_folders(classnames)[classnames.index("Smileys & Emotion")]
    for split, style in (("train", "twitter"), ("val", "google")):
        item = {
            it.key: it for it in sources.emoji_items(fetch.fetch(fetch.SOURCES[f"emoji-datasource-{style}"]), style)
        }
        expected = png_bytes(sources.flatten(item["1f600.png"].rgba(), 64))
        assert (emoji / split / folder / "1f600.png").read_bytes() == expected


@pytest.mark.slow  # prepares the set (once per session)
def test_emoji_styles_by_subcategory_drops_small_classes(tmp_path):
    root = prepare.prepare("emoji-styles", root=tmp_path, options={"label": "subcategory"})
    classnames = assert_classnames_align_with_folders(root)
    counts = json.loads((root / "manifest.json").read_text())["counts"]
    assert min(counts["train"].values()) >= 10 and counts["train"] == counts["val"]
    assert "animal amphibian" in counts["dropped"] and "face smiling" in classnames  # 1 vs 14 emoji
    assert len(classnames) + len(counts["dropped"]) == len({it.subcategory for it in _twitter()})


def test_emoji_class_rejects_an_unknown_label():
    with pytest.raises(ValueError, match="subcategory"):
        classify_sets.emoji_class(_twitter()[0], "colour")


def test_stratified_split_is_per_class_and_seeded():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    train, val = classify_sets.stratified_split(labels, 0.2, seed=5)
    assert Counter(labels[val].tolist()) == {0: 2, 1: 4, 2: 6}
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(60))
    assert np.array_equal(classify_sets.stratified_split(labels, 0.2, seed=5)[1], val)
    assert not np.array_equal(classify_sets.stratified_split(labels, 0.2, seed=6)[1], val)
