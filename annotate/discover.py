"""Dataset discovery for annotation: the training layouts of :mod:`rwkvfusion_io.layouts` and the spectral
containers of :mod:`rwkvfusion_io.spectral`, so that every layout that trains can be annotated and each
manifest row's ``sample_id`` is the key the training data joins by.

- paired images (vif/mif/mef/mff): ``layouts.list_splits`` / ``layouts.list_pairs`` (MSRS, M3FD, TNO,
  RoadScene, LLVIP, Harvard, U2Fusion/MEFB pairs, SICE and IFCNN exposure sequences, MFI-WHU, RealMFF,
  Lytro, generic ``A/B``); ids ``"<split>/<stem>"``, ``"all/<stem>"`` for layouts without splits;
- pansharpening / HMIF containers (a ``.h5``/``.mat`` file, or every one under a folder): one sample per h5
  index (PanCollection ``gt/ms/lms/pan``), one per paired ``.mat`` scene, one per split region of a lone
  HS cube; ``path_a``/``path_b`` both name the container; ids are the records' keys
  (``"<split>/<stem>_<index:05d>"``, ``"<split>/<stem>"``), the split coming from a file-name token
  (``train_wv3.h5`` -> ``train``) or ``"all"``.
A pair with a missing partner becomes a sample whose ``problem`` names the file (written as an error row).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rwkvfusion_io import layouts
from rwkvfusion_io.spectral import file_split, list_h5, list_mat

SPECTRAL_SUFFIXES = (".h5", ".hdf5", ".mat")


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


def discover_samples(root: str | Path, split: str | None = None, *, task: str,
                     label_dir: str | None = None) -> list[Sample]:
    """Samples of ``task`` under ``root`` (layouts in the module doc), sorted by ``(split, stem)``.

    ``split`` selects one split (None: every split the root defines); ``label_dir`` keeps only dataset
    segmentation labels from a folder of that name (MSRS ``Segmentation_labels``). ``root`` may also be one
    ``.h5``/``.mat`` file. A root with containers but no image layout yields the container samples whatever
    the task (the pipeline turns them into error rows naming the task to use). Raises FileNotFoundError /
    ValueError naming ``root``.
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() in SPECTRAL_SUFFIXES:
        return _spectral_samples(root.parent, [root], split)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a directory")
    containers = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SPECTRAL_SUFFIXES
                        and not p.name.startswith("."))
    if task in layouts.SPECTRAL_TASKS:
        if not containers:
            raise ValueError(f"dataset root {root}: no .h5/.mat files for task {task!r}")
        return _spectral_samples(root, containers, split)
    try:
        splits = [split.lower()] if split else layouts.list_splits(task, root)
        samples = [x for sp in splits for x in _pair_samples(task, root, sp, label_dir)]
    except ValueError as exc:
        if containers and "no known" in str(exc):
            return _spectral_samples(root, containers, split)
        raise
    return sorted(samples, key=lambda x: (x.split, x.sample_id))


def _pair_samples(task: str, root: Path, split: str, label_dir: str | None) -> list[Sample]:
    records, problems = layouts.list_pairs(task, root, split)
    out = []
    for r in records:
        label = r.label if label_dir is None or (r.label is not None and r.label.parent.name.lower() == label_dir.lower()) \
            else None
        out.append(Sample(r.key, r.split, root, r.a, r.b, r.gt, label))
    named = records[0].split if records else split
    out += [Sample(f"{named}/{p.id}", named, root, p.a, p.b, problem=_relative(p.message, root))
            for p in problems]
    return out


def _relative(message: str, root: Path) -> str:
    """A layout message with the dataset root's absolute prefix removed (rows name files relative to it)."""
    return message.replace(f"{root.resolve().as_posix()}/", "").replace(f"{root.as_posix()}/", "")


def _spectral_samples(root: Path, files: list[Path], split: str | None) -> list[Sample]:
    """Samples of ``.h5`` / ``.mat`` containers (records from :mod:`rwkvfusion_io.spectral`), sorted by split.

    With ``split`` given, files whose name carries a split keep only that split (ValueError when none
    does). An unreadable file, or a ``.mat`` without an MS/PAN pair or HS cube (e.g. a spectral-response
    table), becomes one sample whose ``problem`` says so.
    """
    named = {f: file_split(f) for f in files}
    if split is not None and any(v != "all" for v in named.values()):
        files = [f for f in files if named[f] in (split.lower(), "all")]
        if not any(named[f] == split.lower() for f in files):
            found = sorted({v for v in named.values() if v != "all"})
            raise ValueError(f"dataset root {root}: no split {split!r} among the .h5/.mat file names; found {found}")
    samples: list[Sample] = []
    for f in files:
        try:
            if f.suffix.lower() == ".mat":
                recs = list_mat(f, "pan", split or "train")
                if recs[0].rows is not None:  # a lone HS cube: top rows train, the rest test (as fusion.data)
                    recs = [r for reg in ([split] if split else ["train", "test"]) for r in list_mat(f, "hmif", reg)]
            else:
                recs = list_h5(f, "pan")
            samples += [Sample(r.key, r.split, root, f, f, index=r.index, rows=r.rows) for r in recs]
        except Exception as e:  # any unreadable container becomes one error row naming the file; the run goes on
            rel = f.relative_to(root).as_posix()
            detail = str(e).replace(str(f), rel)
            detail = detail if detail.startswith(rel) else f"{rel}: {detail}"
            samples.append(Sample(f"{named[f]}/{f.stem}", named[f], root, f, f, problem=detail))
    return sorted(samples, key=lambda s: s.split)  # stable: files and indices keep their order within a split
