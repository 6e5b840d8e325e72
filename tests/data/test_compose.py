"""The compositor: placement, alpha blending, occlusion, and the COCO annotation of a scene (hand-made inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from rils_bench.data.builtin import compose


def _square(size: int, colour: int, alpha: int = 255) -> np.ndarray:
    rgba = np.full((size, size, 4), colour, np.uint8)
    rgba[..., 3] = alpha
    return rgba


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_full_size_cutout_covers_image_and_hides_nothing_it_should_not():
    # scale 1.0 on a 10x10 image leaves one placement, (0, 0); the second full square would hide the first
    # completely, so it is rejected and the first keeps every pixel.
    scene = compose.compose(np.zeros((10, 10, 3), np.uint8), [(_square(10, 200), 3), (_square(10, 50), 5)], _rng(),
                            scale=(1.0, 1.0), min_area=1)  # fmt: skip
    assert scene.class_ids.tolist() == [3]
    assert scene.masks.shape == (1, 10, 10) and scene.masks.all()
    assert (scene.image == 200).all() and (scene.semantic == 3).all()


def test_partial_alpha_is_blended_and_thresholded():
    # alpha 128 of colour 200 over black: round(128 / 255 * 200) = 100; 128 reaches the default threshold.
    scene = compose.compose(np.zeros((8, 8, 3), np.uint8), [(_square(8, 200, alpha=128), 1)], _rng(), scale=(1, 1))
    assert (scene.image == 100).all() and scene.masks[0].all()
    below = compose.compose(np.zeros((8, 8, 3), np.uint8), [(_square(8, 200, alpha=127), 1)], _rng(), scale=(1, 1))
    assert len(below.class_ids) == 0 and (below.semantic == compose.BACKGROUND).all()
    assert (below.image == 0).all()  # a rejected cut-out leaves no unlabelled trace in the image


def test_transparent_half_is_background():
    cutout = _square(10, 200)
    cutout[:, 5:, 3] = 0  # right half transparent (left after a flip)
    background = np.full((10, 10, 3), 7, np.uint8)
    scene = compose.compose(background, [(cutout, 2)], _rng(), scale=(1, 1), min_area=1)
    mask = scene.masks[0]
    assert mask.sum() == 50 and (mask[:, :5].all() or mask[:, 5:].all())
    assert (scene.image[mask] == 200).all() and (scene.image[~mask] == 7).all()
    assert (scene.semantic[mask] == 2).all() and (scene.semantic[~mask] == 0).all()
    assert (background == 7).all()  # the input is not modified


def test_occlusion_gives_pixels_to_the_top_object():
    corner = np.zeros((10, 10, 4), np.uint8)
    corner[:3, :3] = (90, 90, 90, 255)  # an opaque 3x3 corner on a transparent 10x10 cut-out
    cutouts = [(_square(10, 200), 1), (corner, 2)]
    scene = compose.compose(np.zeros((10, 10, 3), np.uint8), cutouts, _rng(), scale=(1, 1), min_area=9)
    assert scene.class_ids.tolist() == [1, 2]
    assert scene.masks[1].sum() == 9 and scene.masks[0].sum() == 91
    assert not (scene.masks[0] & scene.masks[1]).any()
    assert (scene.semantic == 2).sum() == 9 and (scene.image[scene.masks[1]] == 90).all()
    # Covering 9% of the first object is too much when it must keep 95% of itself: the corner is skipped.
    strict = compose.compose(np.zeros((10, 10, 3), np.uint8), cutouts, _rng(), scale=(1, 1), min_area=9,
                             min_visible=0.95)  # fmt: skip
    assert strict.class_ids.tolist() == [1] and strict.masks[0].all()


def test_random_scenes_keep_their_invariants():
    rng = _rng(1)
    blob = _square(40, 0)
    blob[..., :3] = rng.integers(0, 256, (40, 40, 3))
    yy, xx = np.mgrid[:40, :40]
    blob[..., 3] = np.where((yy - 20) ** 2 + (xx - 20) ** 2 < 400, 255, 0)  # a disc
    n_instances = 0
    for _ in range(30):
        cutouts = [(blob, int(c)) for c in rng.integers(1, 6, size=6)]
        scene = compose.compose(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), cutouts, rng, min_area=20)
        assert scene.masks.sum(axis=0).max() <= 1  # disjoint
        assert all(m.sum() >= 20 for m in scene.masks)
        painted = np.zeros((48, 48), np.uint8)
        for mask, class_id in zip(scene.masks, scene.class_ids, strict=True):
            painted[mask] = class_id
        np.testing.assert_array_equal(painted, scene.semantic)
        n_instances += len(scene.class_ids)
    assert 30 <= n_instances < 180  # some placements are rejected, every scene keeps its first object


def test_same_rng_same_scene():
    cutouts = [(_square(6, 100), 1), (_square(4, 250), 2)]
    a, b = (compose.compose(np.zeros((32, 32, 3), np.uint8), cutouts, _rng(5)) for _ in range(2))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    c = compose.compose(np.zeros((32, 32, 3), np.uint8), cutouts, _rng(6))
    assert not np.array_equal(a.image, c.image)


def test_class_id_zero_is_refused():
    with pytest.raises(ValueError, match="background"):
        compose.compose(np.zeros((8, 8, 3), np.uint8), [(_square(4, 1), 0)], _rng())


def test_tight_crop_and_resize():
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[2:5, 3:9, 3] = 255
    rgba[6, 10, 3] = 1  # faint: kept at threshold 1, cropped at 128
    assert compose.tight_crop(rgba).shape == (5, 8, 4)
    assert compose.tight_crop(rgba, 128).shape == (3, 6, 4)
    assert compose.resize_longest(rgba, 24).shape == (20, 24, 4)
    with pytest.raises(ValueError):
        compose.tight_crop(np.zeros((3, 3, 4), np.uint8))


def test_coco_annotation_of_a_scene():
    from pycocotools import mask as mask_utils

    masks = np.zeros((2, 6, 7), bool)
    masks[0, 1:3, 2:6] = True  # x 2..5, y 1..2
    masks[1, 4, 0] = masks[1, 5, 3] = True  # two pixels: x 0..3, y 4..5
    scene = compose.Scene(np.zeros((6, 7, 3), np.uint8), masks, np.array([4, 1]), np.zeros((6, 7), np.uint8))
    anns = compose.coco_annotations(scene, image_id=9, first_id=20)
    assert [a["bbox"] for a in anns] == [[2, 1, 4, 2], [0, 4, 4, 2]]
    assert [a["area"] for a in anns] == [8, 2] and [a["id"] for a in anns] == [20, 21]
    assert [a["category_id"] for a in anns] == [4, 1] and {a["image_id"] for a in anns} == {9}
    for ann, mask in zip(anns, masks, strict=True):
        assert isinstance(ann["segmentation"]["counts"], str) and ann["segmentation"]["size"] == [6, 7]
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
