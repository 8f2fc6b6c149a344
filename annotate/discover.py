"""Dataset discovery: the sample pairs of a dataset root, in a deterministic order.

Layouts (first match wins, folder names case-insensitive):
- split folders holding a modality pair, e.g. MSRS ``{train,test}/{ir,vi}`` (+ ``Segmentation_labels``);
- split folders inside a modality pair, e.g. LLVIP ``{infrared,visible}/{train,test}``;
- a modality pair at the root: generic ``a/ b/``, TNO/RoadScene ``ir/ vi/``, MIF ``MRI/ {SPECT,PET,CT}``,
  MEF ``ue/ oe/``, MFF ``far/ near/`` (optional ``gt/`` beside them);
- Lytro-style suffix pairs in one folder: ``NAME-A.ext`` / ``NAME-B.ext``;
- pansharpening / HMIF containers (a ``.h5``/``.mat`` file, or a folder of them when no image layout
  matches), listed by :mod:`fusion.data.spectral`: one sample per h5 index (PanCollection ``gt/ms/lms/pan``),
  one per paired ``.mat`` scene, and one per split region of a lone HS cube. ``path_a``/``path_b`` both
  name the container; ids match ``fusion.data`` (``"{split}/{stem}_{index:05d}"``, ``"{split}/{stem}"``),
  the split coming from a file-name token (``train_wv3.h5`` -> ``train``) or ``"all"``.
Pairs are matched by file stem; a stem present in only one folder becomes a sample whose ``problem``
names the missing file (it is written as an error row).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SPECTRAL_SUFFIXES = (".h5", ".hdf5", ".mat")
SPLIT_WORDS = ("train", "training", "val", "valid", "validation", "test", "testing")
# (a, b) folder names; a = ir / MRI / under-exposed / far-focus, b = visible / functional / over / near.
PAIR_DIRS: tuple[tuple[str, str], ...] = (
    ("a", "b"), ("ir", "vi"), ("ir", "vis"), ("infrared", "visible"), ("ir", "visible"), ("lwir", "visible"),
    ("mri", "spect"), ("mri", "pet"), ("mri", "ct"), ("ue", "oe"), ("under", "over"), ("far", "near"),
)
GT_DIRS = ("gt", "groundtruth", "ground_truth", "reference")
_SUFFIX_RE = re.compile(r"^(?P<stem>.+?)[-_](?P<side>[AaBb])$")


@dataclass(frozen=True)
class Sample:
    """One sample pair. Paths are absolute (None when missing); ``problem`` is set for a broken pair."""

    sample_id: str
    split: str
    root: Path
    path_a: Path | None
    path_b: Path | None
    path_gt: Path | None = None
    path_label: Path | None = None
    problem: str | None = None
    index: int | None = None                # sample index inside an h5 container
    rows: tuple[int, int] | None = None     # row range of a lone HS cube (.mat) for this split

    @property
    def spectral(self) -> bool:
        """True for a pansharpening / HMIF sample read from a ``.h5`` / ``.mat`` container."""
        return self.path_a is not None and self.path_a.suffix.lower() in SPECTRAL_SUFFIXES

    def rel(self, path: Path | None) -> str | None:
        """``path`` relative to the dataset root, with forward slashes."""
        return None if path is None else path.relative_to(self.root).as_posix()


def _children(d: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in sorted(d.iterdir()) if p.is_dir()} if d.is_dir() else {}


def _images(d: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            out.setdefault(p.stem, []).append(p)
    return out


def _find_pair(d: Path) -> tuple[Path, Path] | None:
    kids = _children(d)
    for a, b in PAIR_DIRS:
        if a in kids and b in kids:
            return kids[a], kids[b]
    return None


def _one(stem: str, files: list[Path] | None, side: str, folder: Path, root: Path) -> tuple[Path | None, str | None]:
    if not files:
        return None, f"{side}: no image named {stem!r} in {folder.relative_to(root).as_posix() or '.'}"
    if len(files) > 1:
        names = ", ".join(p.relative_to(root).as_posix() for p in files)
        return files[0], f"{side}: several images share the stem {stem!r} ({names})"
    return files[0], None


def _pair_samples(root: Path, dir_a: Path, dir_b: Path, split: str, gt_dir: Path | None = None,
                  label_dir: Path | None = None) -> list[Sample]:
    ia, ib = _images(dir_a), _images(dir_b)
    ig = _images(gt_dir) if gt_dir is not None else {}
    il = _images(label_dir) if label_dir is not None else {}
    samples = []
    for stem in sorted(set(ia) | set(ib)):
        pa, err_a = _one(stem, ia.get(stem), "a", dir_a, root)
        pb, err_b = _one(stem, ib.get(stem), "b", dir_b, root)
        problems = [e for e in (err_a, err_b) if e]
        samples.append(Sample(f"{split}/{stem}", split, root, pa, pb,
                              (ig.get(stem) or [None])[0], (il.get(stem) or [None])[0],
                              "; ".join(problems) or None))
    return samples


def _suffix_samples(root: Path, d: Path, split: str) -> list[Sample]:
    groups: dict[str, dict[str, list[Path]]] = {}
    for stem, files in _images(d).items():
        m = _SUFFIX_RE.match(stem)
        if m:
            groups.setdefault(m["stem"], {}).setdefault(m["side"].upper(), []).extend(files)
    samples = []
    for stem in sorted(groups):
        pa, err_a = _one(f"{stem}-A", groups[stem].get("A"), "a", d, root)
        pb, err_b = _one(f"{stem}-B", groups[stem].get("B"), "b", d, root)
        problems = [e for e in (err_a, err_b) if e]
        samples.append(Sample(f"{split}/{stem}", split, root, pa, pb, problem="; ".join(problems) or None))
    return samples


def _extra(d: Path, names: Iterable[str]) -> Path | None:
    kids = _children(d)
    return next((kids[n.lower()] for n in names if n.lower() in kids), None)


def discover_samples(root: str | Path, split: str | None = None, *, label_dir: str | None = None) -> list[Sample]:
    """Sample pairs under ``root`` (layouts in the module doc), sorted by ``(split, stem)``.

    ``split`` selects one split folder of split layouts (None: all of them); for layouts without split
    folders it only names the split column (default ``"all"``). ``label_dir`` is the folder name of
    dataset segmentation labels beside the modality folders (MSRS ``Segmentation_labels``).
    Sample ids are ``"{split}/{stem}"``. ``root`` may also be one ``.h5``/``.mat`` file, and a folder with
    no image layout is searched for them (module doc). Raises FileNotFoundError / ValueError naming ``root``.
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() in SPECTRAL_SUFFIXES:
        return _spectral_samples(root.parent, [root], split)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a directory")
    labels = [label_dir] if label_dir else []
    pair = _find_pair(root)
    if pair is not None:
        dir_a, dir_b = pair
        subs_a, subs_b = _children(dir_a), _children(dir_b)
        common = sorted(set(subs_a) & set(subs_b))
        if common and not _images(dir_a) and not _images(dir_b):
            # split folders inside the modality folders: LLVIP {infrared,visible}/{train,test}
            return [s for sp in _select(common, split, root)
                    for s in _pair_samples(root, subs_a[sp], subs_b[sp], subs_a[sp].name)]
        name = split or "all"
        return _pair_samples(root, dir_a, dir_b, name, _extra(root, GT_DIRS), _extra(root, labels))
    kids = _children(root)
    # split folders each holding a pair (MSRS)
    split_dirs = {name: d for name, d in kids.items() if _find_pair(d) is not None}
    if split_dirs:
        out = []
        for sp in _select(sorted(split_dirs), split, root):
            d = split_dirs[sp]
            dir_a, dir_b = _find_pair(d)  # type: ignore[misc]
            out += _pair_samples(root, dir_a, dir_b, d.name, _extra(d, GT_DIRS), _extra(d, labels))
        return out
    samples = _suffix_samples(root, root, split or "all")
    if samples:
        return samples
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SPECTRAL_SUFFIXES
                   and not p.name.startswith("."))
    if files:
        return _spectral_samples(root, files, split)
    known = ", ".join(f"{a}/+{b}/" for a, b in PAIR_DIRS)
    raise ValueError(f"dataset root {root}: no known layout (modality folders {known}; split folders holding "
                     "them; LLVIP infrared/visible/<split>; NAME-A / NAME-B image pairs; or .h5/.mat files)")


def _select(splits: list[str], split: str | None, root: Path) -> list[str]:
    if split is None:
        return splits
    if split.lower() not in splits:
        raise ValueError(f"dataset root {root}: no split {split!r}; found {splits}")
    return [split.lower()]


def file_split(path: Path) -> str:
    """The split a container's file name names (first token in ``SPLIT_WORDS``), else ``"all"``."""
    return next((t for t in re.split(r"[^a-z0-9]+", path.stem.lower()) if t in SPLIT_WORDS), "all")


def _spectral_samples(root: Path, files: list[Path], split: str | None) -> list[Sample]:
    """Samples of ``.h5`` / ``.mat`` containers (records from :mod:`fusion.data.spectral`), sorted by split.

    With ``split`` given, files whose name carries a split keep only that split (ValueError when none
    does); files without one take ``split`` as their split name. An unreadable file, or a ``.mat`` without
    an MS/PAN pair or HS cube (e.g. a spectral-response table), becomes one sample whose ``problem`` says so.
    """
    from fusion.data.spectral import list_h5, list_mat

    named = {f: file_split(f) for f in files}
    if split is not None and any(v != "all" for v in named.values()):
        files = [f for f in files if named[f] in (split.lower(), "all")]
        if not any(named[f] == split.lower() for f in files):
            found = sorted({v for v in named.values() if v != "all"})
            raise ValueError(f"dataset root {root}: no split {split!r} among the .h5/.mat file names; found {found}")
    samples: list[Sample] = []
    for f in files:
        sp = named[f] if named[f] != "all" else (split or "all")
        try:
            if f.suffix.lower() == ".mat":
                regions = [sp] if split is not None or sp != "all" else ["train", "test"]
                recs = list_mat(f, "pan", regions[0])
                if recs[0].rows is not None:  # a lone HS cube: top rows train, the rest test (as fusion.data)
                    recs += [r for reg in regions[1:] for r in list_mat(f, "hmif", reg)]
                    samples += [Sample(f"{reg}/{r.id}", reg, root, f, f, rows=r.rows) for reg, r in zip(regions, recs)]
                else:
                    samples += [Sample(f"{sp}/{r.id}", sp, root, f, f) for r in recs]
            else:
                samples += [Sample(f"{sp}/{r.id}", sp, root, f, f, index=r.index) for r in list_h5(f, "pan")]
        except Exception as e:  # any unreadable container becomes one error row naming the file; the run goes on
            rel = f.relative_to(root).as_posix()
            detail = str(e).replace(str(f), rel)
            detail = detail if detail.startswith(rel) else f"{rel}: {detail}"
            samples.append(Sample(f"{sp}/{f.stem}", sp, root, f, f, problem=detail))
    return sorted(samples, key=lambda s: s.split)  # stable: files and indices keep their order within a split
