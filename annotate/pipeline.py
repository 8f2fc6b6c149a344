"""Per-task annotation pipelines producing manifest schema-v1 rows (SPEC 5, seed 000 Algorithm 2).

For each sample pair: load and check both sources, caption them (Florence-2), encode the captions (T5),
find boxes (Grounding DINO on the class vocabulary, or Florence-2 phrase grounding of the caption),
segment each box (SAM), merge the two sources' instances (Algorithms 1-2, :mod:`annotate.merge`) and
paint the class map. Which stages run is configuration (:mod:`annotate.config`). A sample whose files
are missing, unreadable, corrupt or of different sizes becomes an error row naming the file and the
problem; so does a sample on which a model fails, and the run goes on.

Pansharpening / HMIF containers (``.h5`` / ``.mat``, :mod:`annotate.discover`) are read with
:mod:`rwkvfusion_io.spectral` (the training readers: PanCollection h5 samples as stored, ``.mat`` scenes
Wald-reduced), so the captioned images are the model's inputs: ``a`` = the upsampled low-res MS/HS
``lms`` as an RGB preview, ``b`` = PAN as grey (or the HR-MSI as an RGB preview), both
:func:`spectral_preview`.
"""
from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotate.config import AnnotateConfig, config_hash
from annotate.discover import Sample
from annotate.merge import class_map, merge_instances
from annotate.models.base import Detections, chunks
from rwkvfusion_io.tasks import SPECTRAL_RATIO, SPECTRAL_TASKS

SOURCES = ("a", "b")


class SampleError(Exception):
    """A problem with one sample's input files; the message names the file."""


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rwkvfusion")
    except PackageNotFoundError:
        return "0+unknown"


def load_image(path: Path | None, rel: str | None, side: str) -> Any:
    """Open ``path`` as an RGB PIL image; :class:`SampleError` naming the file when missing or corrupt."""
    from PIL import Image, UnidentifiedImageError

    if path is None:
        raise SampleError(f"{side}: file is missing")
    if not path.is_file():
        raise SampleError(f"{rel}: file is missing")
    try:
        with Image.open(path) as im:
            im.load()
            image = im.copy()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        detail = str(e).replace(str(path), rel or path.name)  # keep rows free of machine-specific paths
        raise SampleError(f"{rel}: cannot read image ({type(e).__name__}: {detail})") from e
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float sources: min-max to 8 bit
        arr = np.asarray(image, dtype=np.float64)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise SampleError(f"{rel}: {bad} of {arr.size} pixels are NaN or infinite")
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(arr.round().astype(np.uint8), mode="L")
    return image.convert("RGB")


# RGB band triplets (0-based) by band count: WV3/WV2 8 bands (coastal, blue, green, yellow, red, red edge,
# NIR1, NIR2) -> bands 5, 3, 2 (1-based); QuickBird / IKONOS / GF-2 / GeoEye 4 bands (B, G, R, NIR) -> 3, 2, 1;
# 3 bands are taken as R, G, B. Other counts (HS cubes, 9-band ALI, ...): bands at 3/4, 1/2 and 1/4 of the
# band range (for a 400-1000 nm HS cube a NIR-red-green false-colour composite).
RGB_BANDS = {8: (4, 2, 1), 4: (2, 1, 0), 3: (0, 1, 2)}
STRETCH_PERCENTILES = (2.0, 98.0)


def rgb_bands(n_bands: int) -> tuple[int, int, int]:
    """0-based band indices rendered as R, G, B for an ``n_bands`` image (``RGB_BANDS``, else spread)."""
    if n_bands < 1:
        raise ValueError(f"rgb_bands: need at least one band, got {n_bands}")
    if n_bands in RGB_BANDS:
        return RGB_BANDS[n_bands]
    return tuple(int(round((n_bands - 1) * f)) for f in (0.75, 0.5, 0.25))  # type: ignore[return-value]


def stretch_to_uint8(band: np.ndarray, percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> np.ndarray:
    """Linear stretch of ``band`` [H, W] mapping its 2nd/98th percentiles to 0/255 (clipped); uint8.

    A constant band (upper percentile = lower) maps to 0.
    """
    x = np.asarray(band, dtype=np.float64)
    lo, hi = np.percentile(x, percentiles)
    if not hi > lo:
        return np.zeros(x.shape, np.uint8)
    return np.clip(np.round((x - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def spectral_preview(arr: np.ndarray, rgb: Sequence[int] | None = None) -> Any:
    """[C, H, W] MS / HS / PAN array -> 8-bit RGB PIL image for the captioner.

    One band: grey (replicated to RGB). Otherwise the bands ``rgb`` (0-based; default :func:`rgb_bands`)
    become R, G, B, each stretched on its own by :func:`stretch_to_uint8` (2-98 % percentiles).
    """
    from PIL import Image

    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"spectral_preview: expected [C, H, W], got shape {arr.shape}")
    idx = (0, 0, 0) if arr.shape[0] == 1 else tuple(rgb) if rgb is not None else rgb_bands(arr.shape[0])
    if len(idx) != 3 or min(idx) < 0 or max(idx) >= arr.shape[0]:
        raise ValueError(f"spectral_preview: RGB bands {idx} do not fit a {arr.shape[0]}-band image")
    return Image.fromarray(np.stack([stretch_to_uint8(arr[i]) for i in idx], axis=-1), mode="RGB")


def _mat_rgb_indexes(path: Path, n_bands: int) -> tuple[int, ...] | None:
    """A .mat scene's own ``RGB_indexes`` (1-based, Vivone's toolbox) as 0-based bands, when valid."""
    import scipy.io as sio

    try:
        d = sio.loadmat(path, variable_names=["RGB_indexes"])
    except Exception:  # v7.3 / unreadable: the reader reports real problems; fall back to RGB_BANDS
        return None
    if "RGB_indexes" not in d:
        return None
    idx = tuple(int(v) - 1 for v in np.asarray(d["RGB_indexes"]).ravel())
    return idx if len(idx) == 3 and min(idx) >= 0 and max(idx) < n_bands else None


def load_spectral(s: Sample, task: str, ratio: int) -> tuple[Any, Any]:
    """RGB previews ``(a, b)`` of a ``.h5`` / ``.mat`` sample: ``lms`` and PAN / HR-MSI (:func:`spectral_preview`)."""
    from rwkvfusion_io.spectral import SpectralRecord, read_h5, read_mat

    assert s.path_a is not None
    rel = s.rel(s.path_a)
    if not s.path_a.is_file():
        raise SampleError(f"{rel}: file is missing")
    rec = SpectralRecord(s.sample_id, s.path_a, s.index, rows=s.rows)
    try:
        arrs = read_h5(rec, task, None, ratio) if s.index is not None else read_mat(rec, task, ratio, None)
    except Exception as e:  # any reader failure (corrupt file, missing key, bad index) is this sample's error row
        detail = str(e).replace(str(s.path_a), rel or s.path_a.name)
        where = rel if s.index is None else f"{rel}[{s.index}]"
        raise SampleError(f"{where}: cannot read {task} sample ({type(e).__name__}: {detail})") from e
    lms, b = arrs["lms"], arrs["b"]
    if lms.shape[1:] != b.shape[1:]:
        raise SampleError(f"{rel}: lms is {lms.shape[2]}x{lms.shape[1]} but the PAN / HR-MSI is "
                          f"{b.shape[2]}x{b.shape[1]}")
    rgb = _mat_rgb_indexes(s.path_a, lms.shape[0]) if s.index is None else None
    return spectral_preview(lms, rgb), spectral_preview(b)


def load_label_map(path: Path | None, rel: str | None, size: tuple[int, int]) -> np.ndarray:
    """A dataset segmentation label image as ``[H, W]`` integers (first channel of colour images)."""
    from PIL import Image, UnidentifiedImageError

    if path is None or not path.is_file():
        raise SampleError(f"{rel or 'segmentation label'}: label file is missing")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as e:
        detail = str(e).replace(str(path), rel or path.name)
        raise SampleError(f"{rel}: cannot read label image ({type(e).__name__}: {detail})") from e
    if arr.ndim == 3:
        arr = arr[..., 0]
    if (arr.shape[1], arr.shape[0]) != size:
        raise SampleError(f"{rel}: label map is {arr.shape[1]}x{arr.shape[0]} but the images are {size[0]}x{size[1]}")
    return arr.astype(np.int64)


def phrase_to_class(phrase: str, classes: Sequence[str], aliases: dict[str, Sequence[str]]) -> str | None:
    """The vocabulary class named in a grounded phrase (earliest mention; class name, alias or plural)."""
    words = re.findall(r"[a-z0-9]+", phrase.lower())
    best: tuple[int, int, str] | None = None
    for cls in classes:
        for name in (cls, *aliases.get(cls, ())):
            toks = re.findall(r"[a-z0-9]+", name.lower())
            n = len(toks)
            for i in range(len(words) - n + 1):
                window = words[i:i + n]
                last = window[-1]
                if window[:-1] == toks[:-1] and last in (toks[-1], toks[-1] + "s", toks[-1] + "es"):
                    key = (i, -n, cls)
                    if best is None or key < best:
                        best = key
                    break
    return None if best is None else best[2]


@dataclass
class _Item:
    sample: Sample
    images: dict[str, Any]
    width: int
    height: int
    label_map: np.ndarray | None = None
    captions: dict[str, str] = field(default_factory=dict)
    text: dict[str, np.ndarray] = field(default_factory=dict)
    dets: dict[str, Detections] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)


class Annotator:
    """Loads the models a configuration needs (failing at once on a bad model path) and turns samples
    into manifest rows: ``rows(samples)`` yields one row per sample, in order.

    ``model_sources`` maps roles (captioner, text_encoder, detector, segmenter) to hub ids or local
    directories and overrides ``cfg.models``. ``timings`` accumulates seconds and items per stage.
    """

    def __init__(self, cfg: AnnotateConfig, *, dataset: str, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 4, created: str | None = None):
        from annotate.models import Florence2, GroundingDino, Sam, T5TextEncoder

        self.cfg, self.dataset, self.batch_size = cfg, dataset, batch_size
        self.created = created
        self._hashes: dict[tuple[str, int, int], str] = {}
        self.timings: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "items": 0})
        need, m = cfg.needs, cfg.models
        common = {"device": device, "dtype": dtype, "batch_size": batch_size}
        self.captioner = self.encoder = self.detector = self.segmenter = None
        if need["captioner"]:
            c, g = cfg.caption, cfg.grounding
            self.captioner = self._load("load_captioner", lambda: Florence2(
                m.captioner, caption_task=c.task_prompt, num_beams=c.num_beams, max_new_tokens=c.max_new_tokens,
                grounding_task=g.task_prompt, grounding_num_beams=g.num_beams,
                grounding_max_new_tokens=g.max_new_tokens, max_caption_tokens=g.max_caption_tokens, **common))
        if need["text_encoder"]:
            self.encoder = self._load("load_text_encoder", lambda: T5TextEncoder(
                m.text_encoder, max_length=cfg.text.max_length, **common))
        if need["detector"]:
            d = cfg.detector
            self.detector = self._load("load_detector", lambda: GroundingDino(
                m.detector, box_threshold=d.box_threshold, text_threshold=d.text_threshold, nms_iou=d.nms_iou,
                max_detections=d.max_detections, **common))
        if need["segmenter"]:
            self.segmenter = self._load("load_segmenter", lambda: Sam(
                m.segmenter, mask_threshold=cfg.segmenter.mask_threshold, **common))
        loaded = [x for x in (self.captioner, self.encoder, self.detector, self.segmenter) if x is not None]
        self.models = [x.ref.as_row() for x in loaded]
        if self.captioner is not None and cfg.stages.boxes == "phrase_grounding" and need["segmenter"]:
            self.models.append({**self.captioner.ref.as_row(), "role": "grounding"})
        self.config_hash = config_hash(cfg, {x.ref.role if x.ref.role != "caption" else "captioner":
                                             f"{x.ref.id}@{x.ref.revision}" for x in loaded})
        self.version = package_version()

    def _load(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        model = fn()
        self.timings[name]["seconds"] += time.perf_counter() - t0
        self.timings[name]["items"] += 1
        return model

    def _timed(self, name: str, n: int, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.timings[name]["seconds"] += time.perf_counter() - t0
        self.timings[name]["items"] += n
        return out

    # ------------------------------------------------------------------------------------------ rows
    def _base(self, s: Sample) -> dict[str, Any]:
        from manifests import SCHEMA_VERSION, sha256_file
        from manifests.io import printable

        row: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "sample_id": printable(s.sample_id),
                               "dataset": self.dataset,
                               "split": s.split, "task": self.cfg.task, "models": self.models,
                               "config_hash": self.config_hash, "package_version": self.version,
                               "created": self.created}
        for key, path in (("a", s.path_a), ("b", s.path_b), ("gt", s.path_gt)):
            rel = s.rel(path)
            row[f"path_{key}"] = None if rel is None else printable(rel)
            row[f"sha256_{key}"] = self._sha256(path, sha256_file) if path is not None and path.is_file() else None
        return row

    def _sha256(self, path: Path, fn: Callable[[Path], str]) -> str:
        # an h5 container backs thousands of samples (a and b): hash each file version once
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = fn(path)
        return self._hashes[key]

    def error_row(self, s: Sample, message: str, width: int | None = None, height: int | None = None) -> dict[str, Any]:
        from manifests.io import printable

        row = self._base(s)
        row.update(status="error", error=printable(message), width=width, height=height)
        return row

    def _load_item(self, s: Sample) -> _Item:
        from manifests.io import printable

        if s.problem:
            raise SampleError(s.problem)
        for path in (s.path_a, s.path_b, s.path_gt, s.path_label):
            rel = s.rel(path) if path is not None else None
            if rel is not None and printable(rel) != rel:
                raise SampleError(f"{printable(rel)}: the file name is not valid UTF-8; rename it to annotate it")
        if s.spectral:
            if self.cfg.task not in SPECTRAL_TASKS:
                raise SampleError(f"{s.rel(s.path_a)}: .h5/.mat containers hold pansharpening / HMIF data; "
                                  f"annotate them with --task pan or hmif, not {self.cfg.task}")

            ia, ib = load_spectral(s, self.cfg.task, SPECTRAL_RATIO)
            return _Item(s, {"a": ia, "b": ib}, ia.size[0], ia.size[1])
        ia = load_image(s.path_a, s.rel(s.path_a), "a")
        ib = load_image(s.path_b, s.rel(s.path_b), "b")
        if ia.size != ib.size:
            raise SampleError(f"{s.rel(s.path_a)} is {ia.size[0]}x{ia.size[1]} but {s.rel(s.path_b)} is "
                              f"{ib.size[0]}x{ib.size[1]}: the two sources must be registered to the same size")
        label = None
        if self.cfg.dataset_labels.enabled:
            label = load_label_map(s.path_label, s.rel(s.path_label) if s.path_label else
                                   f"{self.cfg.dataset_labels.dir}/{Path(s.sample_id).name}", ia.size)
        return _Item(s, {"a": ia, "b": ib}, ia.size[0], ia.size[1], label)

    def rows(self, samples: Sequence[Sample]) -> Iterator[dict[str, Any]]:
        """One manifest row per sample, in the order given (batches of ``batch_size`` through the models)."""
        for batch in chunks(list(samples), self.batch_size):
            loaded: list[_Item | dict[str, Any]] = []
            for s in batch:
                try:
                    loaded.append(self._load_item(s))
                except SampleError as e:
                    loaded.append(self.error_row(s, str(e)))
            items = [x for x in loaded if isinstance(x, _Item)]
            done = {id(it): row for it, row in zip(items, self._process_isolated(items))}
            for x in loaded:
                yield done[id(x)] if isinstance(x, _Item) else x

    def _process_isolated(self, items: list[_Item]) -> list[dict[str, Any]]:
        # A model failure on a batch is retried sample by sample, so only the culprit becomes an error row.
        if not items:
            return []
        try:
            return self._process(items)
        except Exception as e:  # any model failure becomes an error row, the run goes on
            if len(items) == 1:
                it = items[0]
                files = ", ".join(p for p in (it.sample.rel(it.sample.path_a), it.sample.rel(it.sample.path_b)) if p)
                return [self.error_row(it.sample, f"annotation failed on {files}: {type(e).__name__}: {e}",
                                       it.width, it.height)]
            return [r for it in items for r in self._process_isolated([it])]

    def _process(self, items: list[_Item]) -> list[dict[str, Any]]:
        cfg, st = self.cfg, self.cfg.stages
        jobs = [(it, src) for it in items for src in st.sources]
        images = [it.images[src] for it, src in jobs]
        if st.caption:
            caps = self._timed("caption", len(images), lambda: self.captioner.caption(images))
            for (it, src), c in zip(jobs, caps):
                it.captions[src] = c
        if st.encode:
            feats = self._timed("encode", len(jobs), lambda: self.encoder.encode([it.captions[s] for it, s in jobs]))
            for (it, src), f in zip(jobs, feats):
                it.text[src] = f
        generated = st.segment and not cfg.dataset_labels.enabled
        if generated:
            if st.boxes == "grounding_dino":
                dets = self._timed("detect", len(images), lambda: self.detector.detect(images, list(cfg.classes)))
            else:
                dets = self._timed("ground", len(images), lambda: self.captioner.ground(
                    images, [it.captions[s] for it, s in jobs]))
                dets = [self._to_vocab(d) for d in dets]
            masks = self._timed("segment", len(images), lambda: self.segmenter.segment(images, [d.boxes for d in dets]))
            for (it, src), d, m in zip(jobs, dets, masks):
                keep = m.reshape(len(m), -1).sum(axis=1) >= cfg.segmenter.min_area if len(m) else np.zeros(0, bool)
                it.dets[src] = Detections(d.boxes[keep], [lab for lab, k in zip(d.labels, keep) if k], d.scores[keep])
                it.masks[src] = m[keep]
        return [self._timed("merge", 1, lambda it=it: self._row(it, generated)) for it in items]

    def _to_vocab(self, d: Detections) -> Detections:
        labels = [phrase_to_class(p, self.cfg.classes, self.cfg.aliases) for p in d.labels]
        keep = np.array([lab is not None for lab in labels], bool)
        return Detections(d.boxes[keep], [lab for lab in labels if lab is not None], d.scores[keep])

    def _row(self, it: _Item, generated: bool) -> dict[str, Any]:
        cfg = self.cfg
        row = self._base(it.sample)
        row.update(status="ok", error=None, width=it.width, height=it.height,
                   caption_a=it.captions.get("a"), caption_b=it.captions.get("b"))
        if it.text:
            row["text_encoder"] = self.encoder.ref.id
            for src, f in it.text.items():
                row[f"text_{src}"] = f
        shape = (it.height, it.width)
        vocab = list(cfg.class_vocab)
        if it.label_map is not None:
            masks, labels, boxes = _instances_from_labels(it.label_map, vocab, cfg.dataset_labels.binarise)
            row.update(boxes=boxes, labels=labels, scores=np.ones(len(labels), np.float32),
                       instance_modality=["both"] * len(labels), masks=masks, mask_source="dataset",
                       class_map=class_map(masks, labels, vocab, shape=shape), class_vocab=vocab)
        elif generated:
            srcs = list(cfg.stages.sources)
            if len(srcs) == 2 and cfg.stages.merge:
                da, db = it.dets["a"], it.dets["b"]
                r = merge_instances(it.masks["a"], da.labels, it.masks["b"], db.labels, iou_threshold=cfg.merge_iou,
                                    boxes_a=da.boxes, scores_a=da.scores, boxes_b=db.boxes, scores_b=db.scores,
                                    shape=shape)
                masks, labels, modality, boxes, scores = r.masks, list(r.classes), r.modality, r.boxes, r.scores
            else:
                masks = np.concatenate([it.masks[s] for s in srcs], axis=0)
                labels = [lab for s in srcs for lab in it.dets[s].labels]
                modality = [s for s in srcs for _ in it.dets[s].labels]
                boxes = np.concatenate([it.dets[s].boxes for s in srcs], axis=0)
                scores = np.concatenate([it.dets[s].scores for s in srcs], axis=0)
            row.update(boxes=boxes, labels=labels, scores=scores, instance_modality=modality, masks=masks,
                       mask_source="generated", class_map=class_map(masks, labels, vocab, shape=shape),
                       class_vocab=vocab)
        else:
            row["mask_source"] = "none"
        from manifests import normalize_row

        return normalize_row(row)  # encode and check here, so a bad value is this sample's error row


def _instances_from_labels(label_map: np.ndarray, vocab: list[str], binarise: bool
                           ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Dataset labels -> one instance per class present: masks [N, H, W], names, boxes [N, 4] xyxy."""
    if binarise:
        values, names = [label_map != 0], ["object"] if (label_map != 0).any() else []
        values = values if names else []
    else:
        present = [int(v) for v in np.unique(label_map) if v != 0]
        bad = [v for v in present if v > len(vocab)]
        if bad:
            raise SampleError(f"label values {bad} exceed the label vocabulary of {len(vocab)} classes")
        values, names = [label_map == v for v in present], [vocab[v - 1] for v in present]
    h, w = label_map.shape
    masks = np.stack(values).astype(bool) if values else np.zeros((0, h, w), bool)
    boxes = np.zeros((len(names), 4), np.float32)
    for k, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        boxes[k] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return masks, names, boxes
