"""Standard on-disk layouts of the fusion datasets -> lists of sample records.

Paired-image layouts (VIF/MIF/MEF/MFF) resolve role folders by name, case-insensitively:

=============  ==========================================  =====================================
layout         folders                                      a / b (/ gt, label)
=============  ==========================================  =====================================
msrs           {train,test}/{vi,ir,Segmentation_labels}     ir / vi, label = Segmentation_labels
m3fd           {Ir,Vis}                                     Ir / Vis
tno, roadscene {ir,vi}                                      ir / vi
llvip          {infrared,visible}/{train,test}              infrared / visible
harvard        {MRI, SPECT|PET|CT}                          MRI / functional-or-CT image
mef_pairs      {ue,oe}[/gt] (U2Fusion, SICE/MEFB pairs)     under- / over-exposed
sequences      <scene>/*.jpg (IFCNN MEDataset, SICE, MEFB)  darkest / brightest by mean luma;
               + optional Label/<scene>.* (SICE GT)         gt = Label/<scene>
mfi_whu        {source_1,source_2,full_clear}               source_1 / source_2 / full_clear
realmff        {FAR,NEAR,GT,mask} + {train,test}.txt        FAR / NEAR / GT/<stem>_F.png
lytro          lytro-NN-A.jpg, lytro-NN-B.jpg (flat)        *-A / *-B  (any "<stem>[-_]A|B")
generic        {A,B}[/GT]  or task role names               A / B / GT
=============  ==========================================  =====================================

``split``: when ``root/<split>`` exists (MSRS, demo data) it is used; for LLVIP the split sits under
each role folder; a ``root/<split>.txt`` list of file names (RealMFF) selects those samples;
otherwise (TNO, RoadScene, Harvard test sets) every sample belongs to every split.
Dataset-provided masks (MSRS ``Segmentation_labels``, a ``mask`` folder) are read as class maps.
Sample ids are file stems (paired folders), ``<stem>`` of ``<stem>-A`` (suffix pairs) or the scene
folder name (sequences).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rwkvfusion_io.images import SampleError, is_image
from rwkvfusion_io.tasks import FUSION_TASKS, SPECTRAL_TASKS

# role folder aliases per task (lower-case); "generic" names are accepted for every task.
ROLE_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "vif": {"a": ("ir", "infrared", "inf", "lwir", "thermal"), "b": ("vi", "vis", "visible", "rgb")},
    "mif": {"a": ("mri", "mr"), "b": ("spect", "pet", "ct")},
    "mef": {"a": ("ue", "under", "under_exposed", "underexposed", "low"),
            "b": ("oe", "over", "over_exposed", "overexposed", "high")},
    "mff": {"a": ("far", "source_1", "imagea", "a_far"), "b": ("near", "source_2", "imageb", "b_near")},
}
GENERIC_ALIASES = {"a": ("a",), "b": ("b",)}
GT_ALIASES = ("gt", "ground_truth", "groundtruth", "reference", "full_clear", "fusion", "label", "labels")
LABEL_ALIASES = ("segmentation_labels", "segmentation_label", "seg_labels", "labels_seg", "mask", "masks")
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
LAYOUTS = ("auto", "msrs", "m3fd", "tno", "roadscene", "llvip", "harvard", "mef_pairs", "sice", "mefb",
           "sequences", "mfi_whu", "realmff", "lytro", "suffix_pairs", "generic", "demo",
           "pancollection", "h5", "mat")
_SUFFIX_RE = re.compile(r"^(?P<stem>.+?)[-_](?P<role>[ABab])$")


@dataclass
class PairRecord:
    """One registered source pair on disk (paths only; pixels are read lazily)."""

    id: str
    a: Path
    b: Path
    gt: Path | None = None
    label: Path | None = None
    extra: dict = field(default_factory=dict)
    split: str = "all"  # the split folder / list the pair came from; "all" for layouts without splits

    @property
    def key(self) -> str:
        """``"<split>/<id>"``: the pair's ``sample_id`` in an annotation manifest of the same root."""
        return f"{self.split}/{self.id}"

    def paths(self) -> dict[str, str]:
        out = {"a": str(self.a), "b": str(self.b)}
        if self.gt is not None:
            out["gt"] = str(self.gt)
        if self.label is not None:
            out["label"] = str(self.label)
        return out


@dataclass
class Problem:
    """A sample that could not be enumerated (missing partner etc.), kept for reporting."""

    id: str
    message: str
    a: Path | None = None  # the files of the pair that do exist
    b: Path | None = None


def _subdirs(path: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def images_by_stem(folder: Path, exts: tuple[str, ...] | None = None) -> dict[str, Path]:
    """The images of ``folder`` by file stem (sorted; hidden files skipped); two images of one stem are an error.
    ``exts`` (lower-case suffixes) selects other files instead, e.g. pansharpening scenes (.mat, .tif)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if is_image(p) if exts is None else is_image(p, exts):
            if p.stem in out:
                raise ValueError(f"{folder}: two images share the stem {p.stem!r} ({out[p.stem].name}, {p.name})")
            out[p.stem] = p
    return out


def _find(dirs: dict[str, Path], names: tuple[str, ...]) -> Path | None:
    for n in names:
        if n in dirs:
            return dirs[n]
    return None


def _role_dirs(base: Path, task: str) -> tuple[Path, Path] | None:
    dirs = _subdirs(base)
    for aliases in (ROLE_ALIASES[task], GENERIC_ALIASES):
        a, b = _find(dirs, aliases["a"]), _find(dirs, aliases["b"])
        if a is not None and b is not None:
            return a, b
    return None


def _pair_folders(a_dir: Path, b_dir: Path, gt_dir: Path | None, label_dir: Path | None,
                  problems: list[Problem]) -> list[PairRecord]:
    """Pair files of two role folders by stem; files without a partner become problems."""
    a_files, b_files = images_by_stem(a_dir), images_by_stem(b_dir)
    gt_files = images_by_stem(gt_dir) if gt_dir is not None else {}
    lab_files = images_by_stem(label_dir) if label_dir is not None else {}
    records = []
    for stem in sorted(set(a_files) | set(b_files)):
        if stem not in b_files:
            problems.append(Problem(stem, f"{a_files[stem]}: no matching file in {b_dir}", a=a_files[stem]))
            continue
        if stem not in a_files:
            problems.append(Problem(stem, f"{b_files[stem]}: no matching file in {a_dir}", b=b_files[stem]))
            continue
        gt = gt_files.get(stem, gt_files.get(f"{stem}_F"))  # RealMFF names its GT <stem>_F.png
        records.append(PairRecord(stem, a_files[stem], b_files[stem], gt, lab_files.get(stem)))
    return records


def _suffix_pairs(base: Path, problems: list[Problem]) -> list[PairRecord]:
    """Flat folder of ``<stem>-A.ext`` / ``<stem>-B.ext`` files (Lytro, MEFB-style)."""
    groups: dict[str, dict[str, Path]] = {}
    for p in sorted(base.iterdir()):
        m = _SUFFIX_RE.match(p.stem) if is_image(p) else None
        if m:
            groups.setdefault(m["stem"], {})[m["role"].upper()] = p
    records = []
    for stem, roles in sorted(groups.items()):
        if "A" not in roles or "B" not in roles:
            have = next(iter(roles.values()))
            problems.append(Problem(stem, f"{have}: its -{'B' if 'A' in roles else 'A'} partner is missing",
                                    a=roles.get("A"), b=roles.get("B")))
            continue
        records.append(PairRecord(stem, roles["A"], roles["B"]))
    return records


def _mean_luma(path: Path) -> float:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", (128, 128))
        return float(sum(i * c for i, c in enumerate(im.convert("L").histogram())) / max(im.width * im.height, 1))


def _sequences(base: Path, problems: list[Problem]) -> list[PairRecord]:
    """Scene folders of 2+ exposures: a = darkest, b = brightest (mean luma); SICE GT from ``Label/``."""
    dirs = _subdirs(base)
    label_dir = _find(dirs, ("label", "labels", "gt"))
    gt_files = images_by_stem(label_dir) if label_dir is not None else {}
    records = []
    for d in dirs.values():
        if d == label_dir:
            continue
        imgs = [p for p in sorted(d.iterdir()) if is_image(p)]
        if len(imgs) < 2:
            problems.append(Problem(d.name, f"{d}: a sequence needs at least 2 images, found {len(imgs)}"))
            continue
        try:
            lumas = [_mean_luma(p) for p in imgs]
        except OSError as exc:
            problems.append(Problem(d.name, f"{d}: cannot read an exposure ({exc})"))
            continue
        order = sorted(range(len(imgs)), key=lambda i: (lumas[i], imgs[i].name))
        a, b = imgs[order[0]], imgs[order[-1]]
        records.append(PairRecord(d.name, a, b, gt_files.get(d.name),
                                  extra={"sequence": [str(p) for p in imgs], "luma": lumas}))
    return records


def resolve_split_base(root: Path, split: str) -> Path:
    """``root/<split>`` when present (any case), else ``root``."""
    for p in (root / split, root / split.capitalize(), root / split.upper()):
        if p.is_dir():
            return p
    return root


def list_splits(task: str, root: str | Path, layout: str = "auto") -> list[str]:
    """The splits a paired-image root defines (split folders, LLVIP ``<role>/<split>`` folders, RealMFF
    ``<split>.txt`` lists), sorted; ``["all"]`` for layouts without splits (TNO, Harvard, Lytro, ...)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a directory")
    found = {n for n in _subdirs(root) if n in SPLIT_NAMES}
    roles = _role_dirs(root, task) if task in FUSION_TASKS else None
    if not found and roles is not None and layout in ("auto", "llvip", "realmff", "generic"):
        found = {n for n in _subdirs(roles[0]) if n in SPLIT_NAMES} & {n for n in _subdirs(roles[1]) if n in SPLIT_NAMES}
        if not found:
            found = {n for n in SPLIT_NAMES if (root / f"{n}.txt").is_file()}
    return sorted(found) or ["all"]


def list_pairs(task: str, root: str | Path, split: str, layout: str = "auto") -> tuple[list[PairRecord], list[Problem]]:
    """Enumerate the sample pairs of a paired-image dataset; returns (records, problems).

    Every record carries the split it was found under (``"all"`` when the layout has no splits, so a
    pair's ``key`` is the same whichever split is asked for)."""
    records, problems, split_used = _list_pairs(task, root, split, layout)
    for r in records:
        r.split = split.lower() if split_used else "all"
    return records, problems


def _list_pairs(task: str, root: str | Path, split: str, layout: str
                ) -> tuple[list[PairRecord], list[Problem], bool]:
    if task not in FUSION_TASKS:
        raise ValueError(f"task {task!r}: paired-image layouts are for {FUSION_TASKS}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} unknown; choose one of {LAYOUTS}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a directory")
    problems: list[Problem] = []
    base = resolve_split_base(root, split)
    splits_here = sorted(n for n in _subdirs(root) if n in SPLIT_NAMES)
    if base == root and splits_here:
        raise ValueError(f"{root}: split {split!r} not found; available splits: {splits_here}")

    if layout in ("auto", "llvip"):  # LLVIP: {visible,infrared}/{train,test}
        roles = _role_dirs(root, task)
        if roles is not None and resolve_split_base(roles[0], split) != roles[0]:
            a_dir, b_dir = (resolve_split_base(r, split) for r in roles)
            return _pair_folders(a_dir, b_dir, None, None, problems), problems, True
        if layout == "llvip":
            raise ValueError(f"{root}: not an LLVIP layout ({{visible,infrared}}/{{{split}}} folders missing)")

    in_split = base != root
    if layout in ("lytro", "suffix_pairs", "mefb"):
        return _suffix_pairs(base, problems), problems, in_split
    if layout in ("sequences", "sice"):
        return _sequences(base, problems), problems, in_split

    roles = _role_dirs(base, task)
    if roles is not None:
        dirs = _subdirs(base)
        gt_dir = _find(dirs, GT_ALIASES) if task in ("mef", "mff") else None
        label_dir = _find(dirs, LABEL_ALIASES)
        records = _pair_folders(roles[0], roles[1], gt_dir, label_dir, problems)
        listing = base / f"{split}.txt"
        if base == root and listing.is_file():  # RealMFF-style split list of file names
            keep = {Path(line.strip()).stem for line in listing.read_text().splitlines() if line.strip()}
            records = [r for r in records if r.id in keep]
            problems = [p for p in problems if p.id in keep]
            in_split = True
        return records, problems, in_split
    if layout not in ("auto",):
        found = sorted(_subdirs(base))
        raise ValueError(f"{base}: layout {layout!r} needs role folders {ROLE_ALIASES[task]['a']} and "
                         f"{ROLE_ALIASES[task]['b']} (or A/B); found folders {found}")
    records = _suffix_pairs(base, problems)
    if records or problems:
        return records, problems, in_split
    records = _sequences(base, problems)
    if records:
        return records, problems, in_split
    raise ValueError(
        f"{base}: no known {task} layout (role folders {ROLE_ALIASES[task]['a']} / {ROLE_ALIASES[task]['b']}, "
        f"'<stem>-A/-B' files, or exposure-sequence folders); found folders {sorted(_subdirs(base))}")


#: the shared real test sets of each fusion task (``../shared/data``): (folder under the data root, layout,
#: pair-id prefix); sources: CDDFuse test_img (TNO, RoadScene, Harvard MRI-SPECT/PET/CT), U2Fusion test_imgs,
#: IFCNN MEDataset/CMFDataset (Zhao et al., CVPR 2023; Xu et al., TPAMI 2020; Zhang et al., Inf. Fusion 2020)
TEST_SETS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "vif": (("vif/tno", "tno", "tno"), ("vif/roadscene", "roadscene", "roadscene")),
    "mif": (("mif/mri_spect", "harvard", "mri_spect"), ("mif/mri_pet", "harvard", "mri_pet"),
            ("mif/mri_ct", "harvard", "mri_ct")),
    "mef": (("mef/u2fusion/dataset1", "mef_pairs", "dataset1"), ("mef/u2fusion/dataset2", "mef_pairs", "dataset2"),
            ("mef/ifcnn_sequences", "sequences", "ifcnn")),
    "mff": (("mff/lytro", "lytro", "lytro"), ("mff/u2fusion", "generic", "u2fusion")),
}


def fusion_pairs(task: str, root: str | Path) -> list[list[tuple[str, Path, Path]]]:
    """The real test pairs of ``task`` under the shared data root: one list of (``"<set>/<id>"``, a, b) per
    non-empty test set of :data:`TEST_SETS` (exposure sequences: darkest / brightest exposure)."""
    if task not in TEST_SETS:
        raise ValueError(f"fusion_pairs: task {task!r} is not a fusion task")
    groups: list[list[tuple[str, Path, Path]]] = []
    for folder, layout, prefix in TEST_SETS[task]:
        base = Path(root) / folder
        if not base.is_dir():
            continue
        try:
            records, _ = list_pairs(task, base, "test", layout)
        except ValueError:  # not that layout (role folders missing): the set contributes nothing
            continue
        if records:
            groups.append([(f"{prefix}/{r.id}", r.a, r.b) for r in records])
    return groups


def check_record_files(rec: PairRecord) -> None:
    """Raise SampleError naming the first missing file of a record."""
    for role, p in rec.paths().items():
        if not Path(p).is_file():
            raise SampleError(f"{p}: {role} file of sample {rec.id!r} not found", sample_id=rec.id, path=p)


__all__ = ["PairRecord", "Problem", "list_pairs", "fusion_pairs", "TEST_SETS", "list_splits", "resolve_split_base", "LAYOUTS", "ROLE_ALIASES",
           "FUSION_TASKS", "SPECTRAL_TASKS", "SampleError"]
