"""The image-text pre-training set and the held-out retrieval set, prepared for real (about 1.5 minutes)."""

import csv
import json
from collections import Counter

import numpy as np
import pytest
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from rils_bench.data.builtin import fetch, imagetext_set, prepare, retrieval_set, sources
from rils_bench.data.builtin.writers import png_bytes
from rils_bench.data.imagetext import ImageTextTable, webdataset_pairs

SEED = 0


def archive(name):
    return fetch.fetch(fetch.SOURCES[name])


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("imagetext")


@pytest.fixture(scope="session")
def imagetext(data_root):
    return prepare.prepare("imagetext", root=data_root, seed=SEED)


@pytest.fixture(scope="session")
def retrieval(data_root):
    return prepare.prepare("retrieval", root=data_root, seed=SEED)


def rows(root, split, suffix="csv"):
    with open(root / f"{split}.{suffix}", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t" if suffix == "tsv" else ","))


def source_key(row):
    """`(source, key)` of the item a row was made from; the key is what `split_of` hashed."""
    path = row["filepath"].removeprefix(f"images/{row['source']}/")
    return row["source"], (f"{row['source']}/{int(path[:-4])}" if row["source"].endswith("mnist") else path)


def index(row):
    """The array index of an MNIST-style row."""
    return int(source_key(row)[1].split("/")[1])


def test_captions_read_as_sentences():
    item = sources.Item("emoji-twitter", "1f600.png", b"", "grinning face", "Smileys & Emotion", "face-smiling")
    assert imagetext_set.emoji_caption(item) == "an emoji of a grinning face, a smiley (face smiling)"
    eagle = sources.Item("emoji-twitter", "1f985.png", b"", "eagle", "Animals & Nature", "animal-bird")
    assert imagetext_set.emoji_caption(eagle) == "an emoji of an eagle, an animal or plant (animal bird)"
    assert imagetext_set.with_article("two hearts") == "two hearts"
    assert imagetext_set.with_article("8 ball") == "8 ball"
    art = sources.Item("openclipart", "k.png", b"", "Soviet shuttle", "transportation", keywords=tuple("abcdefgh"))
    assert imagetext_set.clipart_caption(art) == "clip art of Soviet shuttle, a, b, c, d, e, f"
    assert imagetext_set.class_name_for_caption("T-shirt/top") == "t-shirt or top"


def test_retrieval_holds_out_the_imagetext_fraction():
    assert retrieval_set.DEFAULTS["val_fraction"] == imagetext_set.DEFAULTS["val_fraction"]


@pytest.mark.slow
def test_counts_per_source_and_split(imagetext):
    counts = json.loads((imagetext / "manifest.json").read_text())["counts"]
    total = Counter(counts["train"]) + Counter(counts["val"])
    assert total == {
        "emoji-twitter": 1906,
        "openclipart": 3205,
        "tuxpaint": 785,
        "fashion-mnist": 3000,
        "animal-mnist": 3000,
    }
    for split in ("train", "val"):
        table = rows(imagetext, split)
        assert Counter(r["source"] for r in table) == counts[split]
        assert table == rows(imagetext, split, "tsv")
        assert all((imagetext / r["filepath"]).is_file() for r in table)
    assert len(list((imagetext / "images").rglob("*.png"))) == sum(total.values())
    assert 0.03 < sum(counts["val"].values()) / sum(total.values()) < 0.07  # val_fraction 0.05


@pytest.mark.slow
def test_split_is_by_source_item(imagetext):
    train, val = ({source_key(r) for r in rows(imagetext, s)} for s in ("train", "val"))
    assert not train & val
    fraction = imagetext_set.DEFAULTS["val_fraction"]
    assert all(sources.split_of(k, val_fraction=fraction, seed=SEED) == "val" for _, k in val)
    assert all(sources.split_of(k, val_fraction=fraction, seed=SEED) == "train" for _, k in train)


@pytest.mark.slow
def test_mnist_pairs_come_from_train_images_only(imagetext, data_root):
    table = rows(imagetext, "train") + rows(imagetext, "val")
    animal = prepare.prepare("animal-mnist", root=data_root, seed=SEED)
    animal_val = {int(p.stem) for p in (animal / "val").rglob("*.png")}
    used = {r["source"]: [] for r in table}
    for r in table:
        used[r["source"]].append(r)
    assert not {index(r) for r in used["animal-mnist"]} & animal_val
    labels = sources.fashion_mnist(archive("dataset-fashion-mnist"))["train"][1]
    per_class = Counter(int(labels[index(r)]) for r in used["fashion-mnist"])
    assert per_class == dict.fromkeys(range(10), 300)  # mnist_per_class, from the official train split
    for r in used["fashion-mnist"]:
        name = imagetext_set.class_name_for_caption(sources.FASHION_CLASSES[labels[index(r)]])
        assert r["caption"] in {t(name) for t in OPENAI_IMAGENET_TEMPLATES}
    assert len({r["caption"] for r in used["fashion-mnist"]}) > 300  # templates vary per image


@pytest.mark.slow
def test_shards_hold_exactly_the_table_pairs(imagetext):
    for split in ("train", "val"):
        table = ImageTextTable(imagetext / f"{split}.csv")
        shards = sorted((imagetext / "shards").glob(f"{split}-*.tar"))
        assert len(shards) == -(-len(table) // imagetext_set.DEFAULTS["shard_size"])
        n = 0
        for n, (image, caption) in enumerate(webdataset_pairs(shards), start=1):
            expected_image, expected_caption = table[n - 1]
            assert caption == expected_caption
            np.testing.assert_array_equal(np.asarray(image), np.asarray(expected_image))
        assert n == len(table)


@pytest.mark.slow
def test_images_are_flattened_sources(imagetext):
    emoji = {it.key: it for it in sources.emoji_items(archive("emoji-datasource-twitter"), "twitter")}
    row = next(r for r in rows(imagetext, "train") + rows(imagetext, "val") if r["filepath"].endswith("/1f600.png"))
    assert row["caption"] == "an emoji of a grinning face, a smiley (face smiling)"
    assert (imagetext / row["filepath"]).read_bytes() == png_bytes(sources.flatten(emoji["1f600.png"].rgba(), 64))


@pytest.mark.slow
def test_retrieval_items_were_never_seen_in_pretraining(imagetext, retrieval):
    train = {source_key(r) for r in rows(imagetext, "train")}
    held_out = {source_key(r) for r in rows(imagetext, "val")}
    subsets = {}
    for subset in ("emoji", "tuxpaint"):
        with open(retrieval / subset / "pairs.csv", newline="", encoding="utf-8") as f:
            subsets[subset] = list(csv.DictReader(f))
        assert all((retrieval / subset / r["filepath"]).is_file() for r in subsets[subset])
    found = {("emoji-twitter", f"{r['id']}.png") for r in subsets["emoji"]}
    found |= {("tuxpaint", r["id"].replace("__", "/") + ".png") for r in subsets["tuxpaint"]}
    assert not found & train
    assert found == {(s, k) for s, k in held_out if s in ("emoji-twitter", "tuxpaint")}  # all held out, no more
    counts = json.loads((retrieval / "manifest.json").read_text())["counts"]
    assert counts == {subset: len(pairs) for subset, pairs in subsets.items()} and min(counts.values()) > 20

    google = {it.key: it for it in sources.emoji_items(archive("emoji-datasource-google"), "google")}
    first = subsets["emoji"][0]
    expected = png_bytes(sources.flatten(google[f"{first['id']}.png"].rgba(), 64))
    assert (retrieval / "emoji" / first["filepath"]).read_bytes() == expected  # Google style, unseen


@pytest.mark.slow
def test_retrieval_is_deterministic(retrieval, tmp_path):
    again = prepare.prepare("retrieval", root=tmp_path, seed=SEED)
    assert prepare.content_sha256(again) == prepare.content_sha256(retrieval)
