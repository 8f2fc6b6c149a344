"""Seed 000 Algorithms 1-2 (mask merging, distance reading of `IoU <= d`) and class maps, on hand-made masks."""
from __future__ import annotations

import numpy as np
import pytest

from annotate.merge import (
    binarize_labels,
    binary_mask,
    class_map,
    mask_iou,
    merge_instances,
    merge_masks,
)

H, W = 20, 30


def rect(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def stack(*masks: np.ndarray) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, H, W), dtype=bool)


def iou64(m1: np.ndarray, m2: np.ndarray) -> float:
    union = np.logical_or(m1, m2).sum()
    return float(np.logical_and(m1, m2).sum() / union) if union else 0.0


def test_mask_iou_matches_numpy_reference():
    rng = np.random.default_rng(0)
    a = rng.random((4, H, W)) > 0.6
    b = rng.random((3, H, W)) > 0.3
    b[0] = a[1]  # an identical pair -> exactly 1
    b[2] = False  # an empty mask -> 0
    got = mask_iou(a, b)
    want = np.array([[iou64(x, y) for y in b] for x in a])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got[1, 0] == 1.0 and (got[:, 2] == 0).all()
    assert mask_iou(a[:0], b).shape == (0, 3)


def test_overlap_same_class_gives_union():
    a, b = rect(2, 10, 2, 10), rect(2, 10, 4, 12)  # IoU = 48/80 = 0.6
    r = merge_masks(stack(a), ["person"], stack(b), ["person"], iou_threshold=0.5)
    assert len(r.classes) == 1 and r.classes == ["person"] and r.modality == ["both"]
    np.testing.assert_array_equal(r.masks[0], a | b)


def test_overlap_different_class_keeps_first():
    a, b = rect(2, 10, 2, 10), rect(2, 10, 4, 12)
    r = merge_masks(stack(a), ["person"], stack(b), ["car"], iou_threshold=0.5)
    assert r.classes == ["person"] and r.modality == ["a"]
    np.testing.assert_array_equal(r.masks[0], a)
    # the other order keeps the other first
    r2 = merge_masks(stack(b), ["car"], stack(a), ["person"], iou_threshold=0.5)
    assert r2.classes == ["car"]
    np.testing.assert_array_equal(r2.masks[0], b)


def test_no_overlap_keeps_both_disjoint_same_class():
    # Literal reading (IoU 0 <= d) would fuse these two distinct people and then drop one as a "duplicate".
    a, b = rect(0, 5, 0, 5), rect(10, 15, 20, 25)
    r = merge_masks(stack(a), ["person"], stack(b), ["person"], iou_threshold=0.5)
    assert r.classes == ["person", "person"] and r.modality == ["a", "b"]
    np.testing.assert_array_equal(r.masks, stack(a, b))


def test_no_overlap_keeps_both_disjoint_different_class():
    a, b = rect(0, 5, 0, 5), rect(10, 15, 20, 25)
    r = merge_masks(stack(a), ["person"], stack(b), ["car"])
    assert r.classes == ["person", "car"] and r.modality == ["a", "b"]


def test_object_only_in_first_modality_is_returned():
    # The printed Algorithm 2 returns only the second list; objects seen only in `a` must survive.
    a1, a2 = rect(0, 5, 0, 5), rect(10, 18, 10, 18)
    r = merge_masks(stack(a1, a2), ["person", "car"], stack(), [])
    assert r.classes == ["person", "car"] and r.modality == ["a", "a"]
    np.testing.assert_array_equal(r.masks, stack(a1, a2))


def test_small_overlap_below_threshold_is_not_the_same_object():
    a, b = rect(0, 10, 0, 10), rect(0, 10, 7, 17)  # IoU = 30/170
    r = merge_masks(stack(a), ["person"], stack(b), ["person"], iou_threshold=0.5)
    assert r.modality == ["a", "b"]
    np.testing.assert_array_equal(r.masks, stack(a, b))


def test_threshold_is_inclusive():
    a, b = rect(0, 10, 0, 10), rect(0, 10, 0, 5)  # IoU exactly 0.5
    assert merge_masks(stack(a), ["x"], stack(b), ["x"], iou_threshold=0.5).modality == ["both"]
    assert merge_masks(stack(a), ["x"], stack(b), ["x"], iou_threshold=0.51).modality == ["a", "b"]


def test_duplicates_across_modalities_removed_once():
    p, c = rect(1, 8, 1, 8), rect(10, 18, 12, 26)
    # the same two objects found in both modalities, in a different order in b
    r = merge_masks(stack(p, c), ["person", "car"], stack(c, p), ["car", "person"])
    assert r.classes == ["person", "car"] and r.modality == ["both", "both"]
    np.testing.assert_array_equal(r.masks, stack(p, c))
    # plus one object only in b: it is kept once, after the first modality's objects
    extra = rect(0, 4, 25, 30)
    r = merge_masks(stack(p, c), ["person", "car"], stack(c, extra, p), ["car", "sign", "person"])
    assert r.classes == ["person", "car", "sign"] and r.modality == ["both", "both", "b"]
    np.testing.assert_array_equal(r.masks[2], extra)


def test_same_object_different_class_appears_once():
    a, b = rect(2, 10, 2, 10), rect(2, 10, 3, 11)
    r = merge_masks(stack(a), ["person"], stack(b), ["car"])
    assert len(r.classes) == 1  # the second modality's copy is a duplicate


def test_matched_mask_is_not_emitted_again_after_union_drift():
    # a0 is the same object as b0 (same class, unioned) and as b2 (other class, so a0 is kept). The union
    # a0|b0 has IoU 13/29 < 0.5 with b2, so the printed IoU rule alone would emit b2 a second time.
    s = (1, 40)
    a0 = rect(0, 1, 13, 27, s)
    b0, b2 = rect(0, 1, 15, 33, s), rect(0, 1, 4, 26, s)
    assert iou64(a0, b0) >= 0.5 and iou64(a0, b2) >= 0.5 and iou64(a0 | b0, b2) < 0.5
    r = merge_masks(stack(a0), ["p"], stack(b0, b2), ["p", "c"], iou_threshold=0.5)
    assert r.classes == ["p"] and r.modality == ["both"]
    np.testing.assert_array_equal(r.masks, stack(a0 | b0))


def test_one_mask_matching_two_same_class_masks_unions_all():
    big = rect(0, 10, 0, 10)
    left, right = rect(0, 10, 0, 6), rect(0, 10, 4, 10)  # IoU with big: 0.6 each
    r = merge_masks(stack(big), ["car"], stack(left, right), ["car", "car"])
    assert r.classes == ["car"] and r.modality == ["both"]
    np.testing.assert_array_equal(r.masks[0], big | left | right)


def test_empty_inputs():
    r = merge_masks(stack(), [], stack(), [])
    assert r.masks.shape == (0, H, W) and r.classes == [] and r.modality == []
    b = rect(3, 6, 3, 6)
    r = merge_masks(stack(), [], stack(b), ["car"])
    assert r.modality == ["b"] and r.masks.shape == (1, H, W)
    r = merge_masks([], [], [], [], shape=(4, 5))
    assert r.masks.shape == (0, 4, 5)
    r = merge_masks([], [], stack(b), ["car"])  # an empty list takes its size from the other input
    assert r.masks.shape == (1, H, W)
    with pytest.raises(ValueError, match="both mask inputs are empty"):
        merge_masks([], [], [], [])


def test_bad_inputs_raise():
    a = stack(rect(0, 5, 0, 5))
    with pytest.raises(ValueError, match="different image sizes"):
        merge_masks(a, ["x"], np.zeros((1, H + 1, W), bool), ["x"])
    with pytest.raises(ValueError, match="classes do not match"):
        merge_masks(a, ["x", "y"], a, ["x"])
    with pytest.raises(ValueError, match="binary"):
        merge_masks(a.astype(np.float32) * 0.5, ["x"], a, ["x"])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        merge_masks(a[0], ["x"], a, ["x"])
    with pytest.raises(ValueError, match="iou_threshold"):
        merge_masks(a, ["x"], a, ["x"], iou_threshold=0.0)


def test_merge_instances_boxes_scores_sources():
    a = stack(rect(2, 10, 2, 10), rect(12, 18, 0, 5))
    b = stack(rect(2, 10, 4, 12), rect(0, 4, 20, 30))
    r = merge_instances(a, ["person", "car"], b, ["person", "sign"],
                        boxes_a=[[2, 2, 10, 10], [0, 12, 5, 18]], scores_a=[0.5, 0.7],
                        boxes_b=[[4, 2, 12, 10], [20, 0, 30, 4]], scores_b=[0.9, 0.3])
    assert r.classes == ["person", "car", "sign"] and r.modality == ["both", "a", "b"]
    assert r.sources == [((0,), (0,)), ((1,), ()), ((), (1,))]
    np.testing.assert_array_equal(r.boxes, [[2, 2, 12, 10], [0, 12, 5, 18], [20, 0, 30, 4]])
    np.testing.assert_allclose(r.scores, [0.9, 0.7, 0.3])
    with pytest.raises(ValueError, match="boxes do not match"):
        merge_instances(a, ["p", "c"], b, ["p", "s"], boxes_a=[[0, 0, 1, 1]], boxes_b=[[0, 0, 1, 1]] * 2)


def _reference_merge(a, ca, b, cb, thr):
    """Independent float64 implementation of the docstring's rules (not the module's code path)."""
    same_obj = [[iou64(x, y) >= thr for y in b] for x in a]
    out, cls, mod = [], [], []
    for i, x in enumerate(a):
        m = x.copy()
        for j, y in enumerate(b):
            if same_obj[i][j] and cb[j] == ca[i]:
                m = m | y
        out.append(m)
        cls.append(ca[i])
        mod.append("both" if any(same_obj[i][j] and cb[j] == ca[i] for j in range(len(b))) else "a")
    for j, y in enumerate(b):
        if any(same_obj[i][j] for i in range(len(a))):
            continue
        if any(iou64(o, y) >= thr for o in out[: len(a)]):
            continue
        out.append(y)
        cls.append(cb[j])
        mod.append("b")
    return out, cls, mod


@pytest.mark.parametrize("seed", range(6))
def test_random_boxes_match_reference(seed):
    rng = np.random.default_rng(seed)

    def random_masks(n):
        ms = []
        for _ in range(n):
            y0, x0 = rng.integers(0, H - 4), rng.integers(0, W - 4)
            ms.append(rect(y0, y0 + rng.integers(3, 10), x0, x0 + rng.integers(3, 12)))
        return stack(*ms)

    a, b = random_masks(rng.integers(0, 5)), random_masks(rng.integers(0, 5))
    ca = list(rng.choice(["p", "c"], size=len(a)))
    cb = list(rng.choice(["p", "c"], size=len(b)))
    r = merge_masks(a, ca, b, cb, iou_threshold=0.4)
    out, cls, mod = _reference_merge(list(a), ca, list(b), cb, 0.4)
    assert r.classes == cls and r.modality == mod
    np.testing.assert_array_equal(r.masks, stack(*out))
    assert len(r.classes) >= len(a)  # every object of the first modality is kept


def test_class_map_overlap_rule_and_background():
    big, small = rect(0, 10, 0, 10), rect(2, 5, 2, 5)
    cm = class_map(stack(big, small), ["road", "car"], ["car", "road"])
    assert cm.dtype == np.uint8 and cm.shape == (H, W)
    assert cm[3, 3] == 1  # smaller instance (car) wins inside the large one
    assert cm[8, 8] == 2 and cm[15, 25] == 0
    # order does not matter for the smaller-wins rule
    np.testing.assert_array_equal(cm, class_map(stack(small, big), ["car", "road"], ["car", "road"]))
    # equal areas: the earlier instance wins
    m1, m2 = rect(0, 4, 0, 4), rect(2, 6, 2, 6)
    cm = class_map(stack(m1, m2), ["a", "b"], ["a", "b"])
    assert cm[3, 3] == 1
    cm = class_map(stack(m2, m1), ["b", "a"], ["a", "b"])
    assert cm[3, 3] == 2
    assert (class_map(stack(), [], ["a"]) == 0).all()
    assert class_map([], [], ["a"], shape=(3, 4)).shape == (3, 4)


def test_class_map_errors():
    m = stack(rect(0, 2, 0, 2))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        class_map(m, ["zebra"], ["car"])
    with pytest.raises(ValueError, match="255"):
        class_map(m, ["c0"], [f"c{k}" for k in range(256)])
    with pytest.raises(ValueError, match="1 masks"):
        class_map(m, ["a", "a"], ["a"])


def test_binary_mask_and_labels():
    m = stack(rect(0, 2, 0, 2), rect(5, 7, 5, 7))
    bm = binary_mask(m)
    assert bm.dtype == bool and bm.sum() == 8
    assert binary_mask(stack()).shape == (H, W) and not binary_mask(stack()).any()
    labels = np.zeros((4, 4), np.uint8)
    labels[1, 2] = 7
    np.testing.assert_array_equal(binarize_labels(labels), labels > 0)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0, 2] = 5
    assert binarize_labels(rgb).sum() == 1
