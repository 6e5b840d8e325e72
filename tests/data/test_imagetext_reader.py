"""The image-text readers on small tables and shards: paths, transforms, round trips and clear errors."""

import numpy as np
import pytest
from PIL import Image

from rils_bench.data.builtin.writers import png_bytes, write_table, write_wds_shards
from rils_bench.data.imagetext import ImageTextTable, webdataset_pairs
from rils_bench.errors import UserError


def picture(seed, size=(6, 5), mode="RGB"):
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)


@pytest.fixture
def table_dir(tmp_path):
    """Two PNGs, one addressed relative to the table and one absolute, in a CSV and a TSV."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes(picture(0)))
    (tmp_path / "elsewhere.png").write_bytes(png_bytes(picture(1, mode="RGBA")))
    rows = [
        {"filepath": "img/a.png", "caption": "a red, green thing", "source": "x"},
        {"filepath": str(tmp_path / "elsewhere.png"), "caption": "tab\tfree text", "source": "y"},
    ]
    for name in ("pairs.csv", "pairs.tsv"):
        write_table(tmp_path / name, rows, ("filepath", "caption", "source"))
    return tmp_path


@pytest.mark.parametrize("name", ["pairs.csv", "pairs.tsv"])
def test_table_reads_relative_and_absolute_paths(table_dir, name):
    dataset = ImageTextTable(table_dir / name)
    assert len(dataset) == 2
    image, caption = dataset[0]
    assert caption == "a red, green thing" and image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), picture(0))
    image, caption = dataset[1]
    assert caption == "tab\tfree text"
    np.testing.assert_array_equal(
        np.asarray(image), np.asarray(Image.fromarray(picture(1, mode="RGBA")).convert("RGB"))
    )


def test_table_applies_the_transform(table_dir):
    dataset = ImageTextTable(table_dir / "pairs.csv", transform=lambda im: np.asarray(im).sum())
    assert dataset[0][0] == picture(0).sum()


def test_table_errors_name_the_file(table_dir):
    with pytest.raises(UserError, match="not found: .*nope.csv"):
        ImageTextTable(table_dir / "nope.csv")
    with pytest.raises(UserError, match=r"no column\(s\) \['text'\]"):
        ImageTextTable(table_dir / "pairs.csv", caption_column="text")

    (table_dir / "img" / "a.png").unlink()
    dataset = ImageTextTable(table_dir / "pairs.csv")
    with pytest.raises(UserError, match=r"image file not found: .*img/a.png \(row 1 of .*pairs.csv\)"):
        dataset[0]

    good = png_bytes(picture(1, size=(40, 40)))
    (table_dir / "elsewhere.png").write_bytes(good[: len(good) // 2])  # a truncated download
    with pytest.raises(UserError, match=r"cannot decode image .*elsewhere.png \(row 2"):
        dataset[1]
    (table_dir / "elsewhere.png").write_bytes(b"<html>404</html>")
    with pytest.raises(UserError, match=r"cannot decode image .*elsewhere.png"):
        dataset[1]


def test_webdataset_round_trip(tmp_path):
    samples = [(f"{i:06d}", png_bytes(picture(i)), f"caption {i}") for i in range(5)]
    shards = write_wds_shards(tmp_path / "train-%06d.tar", samples, maxcount=2)
    assert [p.name for p in shards] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]

    pairs = list(webdataset_pairs(shards))
    assert [c for _, c in pairs] == [f"caption {i}" for i in range(5)]
    for i, (image, _) in enumerate(pairs):
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), picture(i))

    pattern = str(tmp_path / "train-{000000..000002}.tar")  # the brace form LAION-style loaders take
    sums = [(int(x), c) for x, c in webdataset_pairs(pattern, transform=lambda im: np.asarray(im).sum())]
    assert sums == [(int(picture(i).sum()), f"caption {i}") for i in range(5)]
