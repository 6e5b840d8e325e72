"""The readers of the real source packages: exact counts, known items, the split and the flattening rules."""

import io
import pickle
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from rils_bench.data.builtin import fetch, sources
from rils_bench.data.builtin.writers import png_bytes


def archive(name):
    return fetch.fetch(fetch.SOURCES[name])


@pytest.fixture(scope="session")
def emoji():
    return {style: sources.emoji_items(archive(f"emoji-datasource-{style}"), style) for style in sources.EMOJI_STYLES}


@pytest.fixture(scope="session")
def stamps():
    return sources.tuxpaint_items(archive("tuxpaint-stamps-default"))


@pytest.fixture(scope="session")
def clipart():
    return sources.openclipart_items(archive("openclipart-png"), archive("openclipart-svg"))


def test_fashion_mnist_is_the_official_split():
    data = sources.fashion_mnist(archive("dataset-fashion-mnist"))
    (x_train, y_train), (x_val, y_val) = data["train"], data["val"]
    assert x_train.shape == (60000, 28, 28) and x_val.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert Counter(y_train.tolist()) == dict.fromkeys(range(10), 6000)
    assert Counter(y_val.tolist()) == dict.fromkeys(range(10), 1000)
    # The first labels of the official files (zalandoresearch/fashion-mnist), and two pixel sums.
    assert y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert y_val[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert int(x_train[0].sum()) == 76247 and int(x_val[0].sum()) == 33456
    assert sources.FASHION_CLASSES[9] == "Ankle boot" and len(sources.FASHION_CLASSES) == 10


def test_animal_mnist_has_1000_silhouettes_per_class():
    images, labels, classnames = sources.animal_mnist(archive("animal-mnist"))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert Counter(labels.tolist()) == dict.fromkeys(range(10), 1000)
    assert classnames == ["Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra"]


def test_the_pickle_reader_builds_arrays_only():
    loads = lambda data: sources._NumpyOnlyUnpickler(io.BytesIO(data)).load()  # noqa: E731
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(loads(pickle.dumps(array)), array)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        loads(pickle.dumps(print))


def test_emoji_are_the_base_emoji_in_both_styles(emoji):
    twitter, google = emoji["twitter"], emoji["google"]
    assert len(twitter) == len(google) == 1906  # 1911 in emoji.json minus 5 "Component" entries
    assert [it.key for it in twitter] == [it.key for it in google]
    assert all(it.category != "Component" for it in twitter)
    # No skin-tone variant: the modifiers U+1F3FB..U+1F3FF never appear in a key.
    assert not any(f"1f3f{c}" in it.key for it in twitter for c in "bcdef")
    grin = {it.key: it for it in twitter}["1f600.png"]
    assert (grin.source, grin.caption, grin.category, grin.subcategory) == (
        "emoji-twitter",
        "grinning face",
        "Smileys & Emotion",
        "face-smiling",
    )
    assert "grinning" in grin.keywords
    image = grin.rgba()
    assert image.mode == "RGBA" and image.size == (64, 64)
    assert grin.png != {it.key: it for it in google}["1f600.png"].png  # another drawing of the same emoji


@pytest.mark.slow
def test_tuxpaint_stamps_with_png_and_caption(stamps):
    assert len(stamps) == 785  # of 952 descriptions: 165 stamps ship only an SVG, 2 no image at all
    assert len({it.key for it in stamps}) == len(stamps)
    assert not any(it.key.endswith("_mirror.png") for it in stamps)  # mirrored copies have no description
    frog = {it.key: it for it in stamps}["animals/amphibians/frog.png"]
    assert (frog.caption, frog.category, frog.subcategory) == ("A frog.", "animals", "amphibians")
    assert frog.rgba().mode == "RGBA"
    assert Counter(it.category for it in stamps)["animals"] == 146


@pytest.mark.slow
def test_openclipart_keeps_titled_good_renders_only(clipart):
    assert len(clipart) == 3205
    keys = {it.key for it in clipart}
    assert not {it.category for it in clipart} & sources.CLIPART_SKIPPED
    assert "food/fruit/banana_mateya_01.png" not in keys  # a 10561 x 16000 render
    assert "electronics/bulb/light_bulb_karl_bartel_01.png" not in keys  # fully transparent
    assert "animals/bugs/flying_wasp_gerald_g._02.png" not in keys  # a symbolic link to _01
    assert "animals/bugs/flying_wasp_gerald_g._01.png" in keys
    head = {it.key: it for it in clipart}["people/man01.png"]
    assert head.caption == "head1"  # "Clipart by Nicu Buculei - head1" without the byline
    assert all(it.caption and "hash" not in it.keywords and it.caption.lower() not in it.keywords for it in clipart)


def test_render_check_rejects_what_shows_nothing():
    drawing = np.zeros((8, 8, 4), np.uint8)
    drawing[2:6, 2:6] = (200, 30, 30, 255)
    assert sources._is_good_render(png_bytes(drawing))
    assert not sources._is_good_render(png_bytes(np.zeros((8, 8, 4), np.uint8)))  # fully transparent
    assert not sources._is_good_render(png_bytes(np.full((8, 8, 3), 77, np.uint8)))  # one flat colour
    assert not sources._is_good_render(b"not a png at all, not a png at all")
    huge = bytearray(png_bytes(drawing))
    huge[16:24] = np.array([5000, 5000], ">u4").tobytes()  # the IHDR claims 25 megapixels
    assert not sources._is_good_render(bytes(huge))
    assert not sources._is_good_render(png_bytes(drawing)[:60])  # truncated


def test_split_is_a_stable_threshold_on_a_keyed_hash():
    keys = [f"item-{i}" for i in range(4000)]
    val = lambda f, seed=0: {k for k in keys if sources.split_of(k, val_fraction=f, seed=seed) == "val"}  # noqa: E731
    five, ten = val(0.05), val(0.10)
    assert 140 < len(five) < 260  # 200 expected; a binomial 4-sigma band
    assert five < ten  # a larger fraction only moves items into val, never out
    assert val(0.0) == set() and val(1.0) == set(keys)
    assert val(0.05) == five and val(0.05, seed=1) != five


def test_flatten_pads_to_a_square_and_composites_on_white():
    red = Image.new("RGBA", (10, 20), (255, 0, 0, 255))
    out = np.asarray(sources.flatten(red, 20))
    assert out.shape == (20, 20, 3)
    assert (out[:, :5] == 255).all() and (out[:, 15:] == 255).all()  # padding, 5 columns each side
    assert (out[:, 5:15] == (255, 0, 0)).all()
    half = np.asarray(sources.flatten(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), 4))
    assert (half == 127).all()  # 255 * (1 - 128/255) = 127
    gray = np.asarray(sources.flatten(Image.new("L", (28, 28), 200), 64, background=(0, 0, 0)))
    assert (gray == 200).all()  # an opaque image fills the square: no background shows


def test_crop_to_content_cuts_to_visible_pixels():
    page = np.zeros((50, 40, 4), np.uint8)
    page[10:20, 5:35] = (0, 0, 0, 255)
    assert sources.crop_to_content(Image.fromarray(page)).size == (30, 10)
    empty = Image.new("RGBA", (7, 3))
    assert sources.crop_to_content(empty).size == (7, 3)
