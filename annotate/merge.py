"""Cross-modality mask merging (the paper's supplement, Algorithms 1-2) and class maps.

Interpretation of the printed algorithms
----------------------------------------
The printed tests ``IoU <= d~`` only make sense if ``d`` is a *distance* ``1 - IoU``: read literally (as
an IoU) a mask that touches nothing (IoU 0) would "match" every mask of the other modality. Here two
masks are **the same object** when ``IoU >= iou_threshold`` (i.e. distance ``1 - IoU <= 1 - iou_threshold``).

Algorithm 1, ``maskMerging(M1, c1, M2, c2)``, one output per mask ``m`` of ``M1`` (class ``c``):
  - ``m`` overlaps no mask of ``M2``              -> ``m`` is kept as it is;
  - ``m`` overlaps masks of ``M2`` of class ``c``   -> the union of ``m`` and all of them, class ``c``;
  - ``m`` overlaps only masks of other classes     -> ``m`` is kept (the first modality wins).
  The printed loop appends once per matching mask (duplicates) and never appends the class in the
  union branch; both are treated as typos.
Algorithm 2 runs Algorithm 1 both ways (``A`` against ``B`` and ``B`` against ``A``) and then removes from
the second list every mask that duplicates an object of the first, so each object appears once, and
returns **both** lists (the printed ``return`` of the second list alone would drop every object seen
only in modality ``a``). A mask ``out2[j]`` is a duplicate when
  - ``IoU(out1[i], out2[j]) >= iou_threshold`` for any ``i`` (the printed rule, over all pairs: the
    printed ``j`` loop starting at ``i + 1`` compares indices of two different lists and would miss
    duplicates with ``j <= i``; popping inside the loop would also skip elements), or
  - its source mask ``B[j]`` is the same object as some ``A[i]`` (then it is already in ``out1[i]``, by
    union for the same class or by "the first is kept" for different classes; this also covers chains,
    where two unions of the same masks drift below the threshold).
Cases where the literal reading would drop or fuse distinct objects, handled here and tested:
two disjoint masks of one class (literal: fused into one union, then one of them removed as a
"duplicate"), an object seen only in modality ``a`` (literal: not returned), disjoint masks of
different classes (literal: the second modality's one is popped).

Output order: the merged masks of ``A`` in their order, then the remaining masks of ``B`` in theirs.
Source modality of each output: ``"both"`` when it is a union with masks of the other modality,
otherwise ``"a"`` or ``"b"``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


def _as_masks(masks: object, name: str, shape: tuple[int, int] | None) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.size == 0 and arr.ndim < 3:
        if shape is None:
            return np.zeros((0, 0, 0), dtype=bool)  # shape taken from the other input (or `shape`)
        return np.zeros((0, *shape), dtype=bool)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be binary masks [N, H, W], got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be binary (bool or 0/1), got values outside {{0, 1}}")
        arr = arr.astype(bool)
    return arr


def mask_iou(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[N, M]`` (float64) of binary masks ``[N, H, W]`` and ``[M, H, W]``; 0 when both are empty.

    pycocotools computes it on run-length encodings (fast and exact for large images).
    """
    from pycocotools import mask as mask_utils

    if masks1.shape[1:] != masks2.shape[1:]:
        raise ValueError(f"mask sizes differ: {masks1.shape[1:]} vs {masks2.shape[1:]}")
    n, m = masks1.shape[0], masks2.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)

    def rle(x: np.ndarray) -> list:
        return mask_utils.encode(np.asfortranarray(x.transpose(1, 2, 0).astype(np.uint8)))

    return np.asarray(mask_utils.iou(rle(masks1), rle(masks2), [0] * m), dtype=np.float64).reshape(n, m)


class MergedMasks(NamedTuple):
    """Result of :func:`merge_masks`: masks ``[K, H, W]`` bool, their classes, and ``"a" | "b" | "both"``."""

    masks: np.ndarray
    classes: list
    modality: list[str]


@dataclass
class MergedInstances:
    """Result of :func:`merge_instances`: :class:`MergedMasks` plus boxes, scores and source indices."""

    masks: np.ndarray
    classes: list
    modality: list[str]
    sources: list[tuple[tuple[int, ...], tuple[int, ...]]]  # (indices into A, indices into B) per output
    boxes: np.ndarray | None = None  # [K, 4] xyxy: the box enclosing the sources' boxes
    scores: np.ndarray | None = None  # [K]: the best score of the sources
    iou_threshold: float = 0.5


def _mask_merging(m1: np.ndarray, c1: Sequence, m2: np.ndarray, c2: Sequence, iou: np.ndarray,
                  thr: float) -> list[tuple[np.ndarray, list[int], list[int]]]:
    """Algorithm 1 (distance reading): per mask of ``m1`` -> (mask, same-class matches, all matches in ``m2``)."""
    out = []
    for i in range(m1.shape[0]):
        matches = [j for j in range(m2.shape[0]) if iou[i, j] >= thr]
        same = [j for j in matches if c2[j] == c1[i]]
        mask = m1[i].copy()
        for j in same:
            mask |= m2[j]
        out.append((mask, same, matches))
    return out


def merge_instances(masks_a: object, classes_a: Sequence, masks_b: object, classes_b: Sequence, *,
                    iou_threshold: float = 0.5, boxes_a: object = None, scores_a: object = None,
                    boxes_b: object = None, scores_b: object = None,
                    shape: tuple[int, int] | None = None) -> MergedInstances:
    """Algorithm 2 over two modalities' instances (module doc gives the interpretation).

    masks_*: ``[N, H, W]`` binary; classes_*: ``N`` labels (any comparable type); boxes_* ``[N, 4]`` and
    scores_* ``[N]`` optional (give both modalities' or neither). ``shape`` = ``(H, W)`` is needed only
    when both mask inputs are empty lists.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    a = _as_masks(masks_a, "masks_a", shape)
    b = _as_masks(masks_b, "masks_b", shape)
    if a.shape[1:] == (0, 0) and a.shape[0] == 0:
        a = np.zeros((0, *b.shape[1:]), dtype=bool)
    if b.shape[1:] == (0, 0) and b.shape[0] == 0:
        b = np.zeros((0, *a.shape[1:]), dtype=bool)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"masks_a and masks_b have different image sizes: {a.shape[1:]} vs {b.shape[1:]}")
    if a.shape[1:] == (0, 0) and shape is None:
        raise ValueError("both mask inputs are empty: pass shape=(H, W) or [0, H, W] arrays")
    ca, cb = list(classes_a), list(classes_b)
    if len(ca) != a.shape[0] or len(cb) != b.shape[0]:
        raise ValueError(f"classes do not match masks: {len(ca)} classes for {a.shape[0]} masks_a, "
                         f"{len(cb)} classes for {b.shape[0]} masks_b")
    iou = mask_iou(a, b)
    out1 = _mask_merging(a, ca, b, cb, iou, iou_threshold)
    out2 = _mask_merging(b, cb, a, ca, iou.T, iou_threshold)
    m1 = np.stack([o[0] for o in out1]) if out1 else np.zeros((0, *a.shape[1:]), dtype=bool)
    m2 = np.stack([o[0] for o in out2]) if out2 else np.zeros((0, *a.shape[1:]), dtype=bool)
    dup = (mask_iou(m1, m2) >= iou_threshold).any(axis=0) if len(out1) and len(out2) else np.zeros(len(out2), bool)
    keep2 = [j for j in range(len(out2)) if not dup[j] and not out2[j][2]]

    masks = np.concatenate([m1, m2[keep2]], axis=0)
    classes = ca + [cb[j] for j in keep2]
    modality = ["both" if same else "a" for _, same, _ in out1] + ["b" for _ in keep2]
    sources = [((i,), tuple(out1[i][1])) for i in range(len(out1))] + [((), (j,)) for j in keep2]

    boxes = scores = None
    if boxes_a is not None or boxes_b is not None:
        ba = np.asarray(boxes_a if boxes_a is not None else np.zeros((0, 4)), dtype=np.float32).reshape(-1, 4)
        bb = np.asarray(boxes_b if boxes_b is not None else np.zeros((0, 4)), dtype=np.float32).reshape(-1, 4)
        if len(ba) != a.shape[0] or len(bb) != b.shape[0]:
            raise ValueError(f"boxes do not match masks: {len(ba)}/{a.shape[0]} (a), {len(bb)}/{b.shape[0]} (b)")
        boxes = np.zeros((len(sources), 4), dtype=np.float32)
        for k, (ia, ib) in enumerate(sources):
            src = np.concatenate([ba[list(ia)], bb[list(ib)]], axis=0)
            boxes[k] = [src[:, 0].min(), src[:, 1].min(), src[:, 2].max(), src[:, 3].max()]
    if scores_a is not None or scores_b is not None:
        sa = np.asarray(scores_a if scores_a is not None else np.zeros(0), dtype=np.float32).reshape(-1)
        sb = np.asarray(scores_b if scores_b is not None else np.zeros(0), dtype=np.float32).reshape(-1)
        if len(sa) != a.shape[0] or len(sb) != b.shape[0]:
            raise ValueError(f"scores do not match masks: {len(sa)}/{a.shape[0]} (a), {len(sb)}/{b.shape[0]} (b)")
        scores = np.array([max([*sa[list(ia)], *sb[list(ib)]]) for ia, ib in sources], dtype=np.float32)
    return MergedInstances(masks, classes, modality, sources, boxes, scores, iou_threshold)


def merge_masks(masks_a: object, classes_a: Sequence, masks_b: object, classes_b: Sequence,
                iou_threshold: float = 0.5, *, shape: tuple[int, int] | None = None) -> MergedMasks:
    """Algorithms 1-2 (supplement): merge two modalities' instance masks (interpretation in the module doc).

    masks_a ``[N, H, W]``, masks_b ``[M, H, W]`` binary; returns ``(masks [K, H, W] bool, classes,
    modality)`` with modality ``"a"``, ``"b"`` or ``"both"`` per output instance.
    """
    r = merge_instances(masks_a, classes_a, masks_b, classes_b, iou_threshold=iou_threshold, shape=shape)
    return MergedMasks(r.masks, r.classes, r.modality)


def class_map(masks: object, classes: Sequence, vocabulary: Sequence, *,
              shape: tuple[int, int] | None = None) -> np.ndarray:
    """Paint instances into an ``[H, W]`` uint8 class map: 0 = background, ``vocabulary.index(c) + 1``.

    Overlap rule: where instances overlap, the pixel takes the class of the **smaller** instance (so a
    small object inside a large one stays visible); for equal areas the earlier instance wins.
    At most 255 classes. ``shape`` is needed only when ``masks`` is an empty list.
    """
    vocab = list(vocabulary)
    if len(vocab) > 255:
        raise ValueError(f"a uint8 class map holds at most 255 classes, vocabulary has {len(vocab)}")
    if len(set(vocab)) != len(vocab):
        raise ValueError(f"vocabulary has repeated names: {vocab}")
    m = _as_masks(masks, "masks", shape)
    if m.shape[1:] == (0, 0) and m.shape[0] == 0 and shape is None:
        raise ValueError("class_map: no masks; pass shape=(H, W) or a [0, H, W] array")
    if len(classes) != m.shape[0]:
        raise ValueError(f"class_map: {len(classes)} classes for {m.shape[0]} masks")
    index = {c: k + 1 for k, c in enumerate(vocab)}
    unknown = sorted({str(c) for c in classes if c not in index})
    if unknown:
        raise ValueError(f"class_map: classes {unknown} are not in the vocabulary {vocab}")
    out = np.zeros(m.shape[1:], dtype=np.uint8)
    areas = m.sum(axis=(1, 2))
    # paint largest first, ties: later index first, so smaller / earlier instances end up on top
    for k in sorted(range(m.shape[0]), key=lambda k: (-int(areas[k]), -k)):
        out[m[k]] = index[classes[k]]
    return out


def binary_mask(masks: object, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Union of all instance masks ``[N, H, W]`` -> ``[H, W]`` bool (foreground of any class)."""
    m = _as_masks(masks, "masks", shape)
    if m.shape[1:] == (0, 0) and m.shape[0] == 0 and shape is None:
        raise ValueError("binary_mask: no masks; pass shape=(H, W) or a [0, H, W] array")
    return m.any(axis=0) if m.shape[0] else np.zeros(m.shape[1:], dtype=bool)


def binarize_labels(labels: np.ndarray) -> np.ndarray:
    """A dataset's segmentation label map (e.g. MSRS ``Segmentation_labels``) -> ``[H, W]`` bool, label > 0.

    Colour label images ``[H, W, 3]`` count any non-zero channel as foreground.
    """
    arr = np.asarray(labels)
    if arr.ndim == 3:
        return (arr != 0).any(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"label map must be [H, W] or [H, W, C], got shape {arr.shape}")
    return arr != 0
