"""``python -m annotate smoke --out DIR``: an offline install check with tiny random-weight models.

Builds tiny versions of every model from configs (tokenizers trained from scratch with the ``tokenizers``
library), saves them under ``DIR/models/{captioner,text_encoder,detector,segmenter}``, generates a small
deterministic VIF dataset under ``DIR/data`` (with one corrupt image file), and annotates it into
``DIR/manifest`` through the normal loading and run code. Exits 0 when the manifest is complete (every
sample has a row; the corrupt file is an error row naming it). Run again with the same ``DIR`` it
resumes: nothing is redone and the manifest files stay byte-identical. ``DIR/smoke_report.json``
records per-stage timings of the run (the benchmark's annotation-cost figures).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

ROLES = ("captioner", "text_encoder", "detector", "segmenter")
SMOKE_CORPUS = (
    "a person walks on the road near a parked car at night",
    "the infrared image shows a warm pedestrian and a bus on the street",
    "a truck and a motorcycle pass under a bright street lamp",
    "a bicycle leans against a building next to a tree",
    "the visible image is dark with lamps, cars and people",
    "person. car. bus. motorcycle. bicycle. truck. lamp.",
    "describe with a paragraph what is shown in the image. locate the phrases in the caption:",
)
# Small but complete settings: the paper's prompts and beam search, short generations, few boxes.
SMOKE_OVERRIDES: dict[str, Any] = {
    "caption": {"num_beams": 3, "max_new_tokens": 12},
    "grounding": {"num_beams": 3, "max_new_tokens": 12, "max_caption_tokens": 32},
    "detector": {"box_threshold": 0.3, "text_threshold": 0.2, "max_detections": 4},
}
N_PAIRS = 6
CORRUPT = "vi/scene_03.png"
IMAGE_SIZE = (48, 64)  # (H, W)


# --------------------------------------------------------------------------------------- tokenizers
def _bpe(corpus: tuple[str, ...], vocab_size: int = 400) -> tuple[dict[str, int], list[tuple[str, str]]]:
    import tokenizers
    from tokenizers import pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def _wordpiece(corpus: tuple[str, ...]) -> dict[str, int]:
    """BERT WordPiece vocabulary of the corpus: its words (BERT normalisation and pre-tokenisation from
    the ``tokenizers`` library) plus every character as a word start and as a ``##`` continuation.

    (tokenizers' WordPieceTrainer breaks ties in hash order: a different vocabulary in every process.)
    """
    from tokenizers import normalizers, pre_tokenizers

    norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words: set[str] = set()
    for text in corpus:
        words.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars),
              *sorted(words - set(chars))]
    return {t: i for i, t in enumerate(tokens)}


def _unigram(corpus: tuple[str, ...], vocab_size: int = 150) -> list[tuple[str, float]]:
    """SentencePiece-style Unigram vocabulary: pieces learned by (deterministic) BPE merges over
    ``▁``-marked words, scored by the log frequency of each piece in the tokenised corpus.

    (tokenizers' UnigramTrainer breaks ties in hash order, giving a different model in every process.)
    """
    import tokenizers
    from tokenizers import pre_tokenizers, trainers

    specials = ["<pad>", "</s>", "<unk>"]
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                        special_tokens=specials))
    counts: dict[str, int] = {}
    for text in corpus:
        for piece in tok.encode(text).tokens:
            counts[piece] = counts.get(piece, 0) + 1
    total = sum(counts.values()) + len(tok.get_vocab())
    pieces = sorted((p for p in tok.get_vocab() if p not in specials), key=lambda p: (-counts.get(p, 0), p))
    return [(p, 0.0) for p in specials] + [(p, float(np.log((counts.get(p, 0) + 1) / total))) for p in pieces]


# ------------------------------------------------------------------------------------- tiny models
def _tiny_florence2(path: Path) -> None:
    import torch
    from transformers import (
        BartConfig,
        BartTokenizer,
        CLIPImageProcessorPil,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    vocab, merges = _bpe(SMOKE_CORPUS)
    tok = BartTokenizer(vocab=vocab, merges=merges, extra_special_tokens={"image_token": "<image>"})
    tok.add_tokens([f"<loc_{i}>" for i in range(1000)] + ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>",
                                                          "<sep>", "<ground>", "</ground>", "<obj>", "</obj>"])
    vision = Florence2VisionConfig(depths=[1, 1, 1, 1], embed_dim=[8, 16, 16, 32], num_heads=[1, 1, 1, 2],
                                   num_groups=[1, 1, 1, 2], window_size=2, projection_dim=32,
                                   max_position_embeddings=8, max_temporal_embeddings=4, drop_path_rate=0.0)
    text = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      decoder_start_token_id=tok.eos_token_id, forced_bos_token_id=tok.bos_token_id,
                      forced_eos_token_id=tok.eos_token_id)
    cfg = Florence2Config(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_id=tok.image_token_id)
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(cfg).eval()
    # 64 px input, total stride 32 -> 2x2 patches + 1 temporal token = 5 image tokens
    images = CLIPImageProcessorPil(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64},
                                   do_center_crop=False, image_seq_length=5)
    post = {"pure_text": {}, "ocr": {}, "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
            "description_with_bboxes": {}, "description_with_polygons": {}, "polygons": {}, "bboxes": {},
            "description_with_bboxes_or_polygons": {}}
    Florence2Processor(image_processor=images, tokenizer=tok, post_processor_config=post).save_pretrained(path)
    model.save_pretrained(path)


def _tiny_t5(path: Path) -> None:
    import torch
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    tok = T5Tokenizer(vocab=_unigram(SMOKE_CORPUS), extra_ids=0)
    cfg = T5Config(vocab_size=len(tok), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1)
    tok.save_pretrained(path)
    T5EncoderModel(cfg).eval().save_pretrained(path)


def _tiny_grounding_dino(path: Path) -> None:
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tok = BertTokenizer(vocab=_wordpiece(SMOKE_CORPUS))
    backbone = SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2, image_size=64,
                          out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    # d_model must be a multiple of 32 (GroupNorm(32)); 2 decoder layers (the box heads are tied across layers)
    cfg = GroundingDinoConfig(backbone_config=backbone.to_dict(), text_config=text.to_dict(), num_queries=20,
                              encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                              encoder_attention_heads=2, decoder_attention_heads=2, d_model=32, max_text_len=64,
                              num_feature_levels=3, encoder_n_points=1, decoder_n_points=1)
    torch.manual_seed(2)
    model = GroundingDinoForObjectDetection(cfg).eval()
    images = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=images, tokenizer=tok).save_pretrained(path)
    model.save_pretrained(path)


def _tiny_sam(path: Path) -> None:
    import torch
    from transformers import (
        SamConfig,
        SamImageProcessorPil,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    vision = SamVisionConfig(hidden_size=16, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
                             image_size=64, patch_size=8, window_size=4, global_attn_indexes=[1], mlp_dim=32,
                             num_pos_feats=8)
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                   iou_head_hidden_dim=16)
    cfg = SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                    mask_decoder_config=decoder.to_dict())
    torch.manual_seed(3)
    model = SamModel(cfg).eval()
    images = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                  mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    SamProcessor(image_processor=images).save_pretrained(path)
    model.save_pretrained(path)


BUILDERS = {"captioner": _tiny_florence2, "text_encoder": _tiny_t5, "detector": _tiny_grounding_dino,
            "segmenter": _tiny_sam}
_DONE = ".smoke-complete"


def build_tiny_models(models_dir: str | Path) -> dict[str, str]:
    """Build (once) the four tiny random-weight models under ``models_dir/<role>``; ``{role: path}``.

    Each is written to a temporary folder and renamed when complete, so an interrupted build is redone.
    """
    from transformers.utils import logging as hf_logging

    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for role in ROLES:
        final = root / role
        if not (final / _DONE).is_file():
            tmp = root / f".{role}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                BUILDERS[role](tmp)
            finally:
                hf_logging.set_verbosity(verbosity)
            (tmp / _DONE).write_text("built by annotate.smoke\n")
            tmp.rename(final)
        out[role] = str(final)
    return out


# ------------------------------------------------------------------------------------------ dataset
def make_vif_dataset(root: str | Path, n_pairs: int = N_PAIRS, corrupt: str | None = CORRUPT) -> list[Path]:
    """A deterministic VIF dataset ``root/{ir,vi}/scene_NN.png`` (grey IR, colour visible, a few warm
    blobs and boxes); ``corrupt`` (a relative path) is replaced by bytes that are not an image."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(1234)
    h, w = IMAGE_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    files = []
    for i in range(n_pairs):
        ir = np.full((h, w), 40.0) + rng.normal(0, 4, (h, w))
        vi = np.stack([np.full((h, w), 90.0 + 10 * c) for c in range(3)], -1) + rng.normal(0, 6, (h, w, 3))
        for _ in range(2):  # objects: warm in IR, coloured in visible
            cy, cx, ry, rx = rng.integers(8, h - 8), rng.integers(8, w - 8), rng.integers(3, 8), rng.integers(3, 8)
            blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            ir[blob] = 220
            vi[blob] = rng.integers(0, 255, 3)
        for sub, arr in (("ir", ir), ("vi", vi)):
            p = root / sub / f"scene_{i:02d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            if not p.exists():
                Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(p, format="PNG", compress_level=6)
            files.append(p)
    if corrupt:
        if root / corrupt not in files:
            raise ValueError(f"corrupt={corrupt!r} is not one of the {n_pairs} generated pairs' files")
        (root / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image: truncated on purpose")
    return files


# ---------------------------------------------------------------------------------------- the check
def _write_config(path: Path) -> Path:
    import yaml

    path.write_text("# tiny-model settings of `python -m annotate smoke` (use with --config)\n"
                    + yaml.safe_dump(SMOKE_OVERRIDES, sort_keys=True))
    return path


def check_manifest(manifest: str | Path, data: str | Path, corrupt: str | None = CORRUPT, task: str = "vif"
                   ) -> list[str]:
    """Problems that make the smoke manifest incomplete (empty list: complete)."""
    from annotate.discover import discover_samples
    from manifests import read_manifest, rows_by_id

    rows = rows_by_id(read_manifest(manifest))
    problems = []
    for s in discover_samples(data, task=task):
        row = rows.get(s.sample_id)
        bad_file = corrupt is not None and corrupt in {s.rel(s.path_a), s.rel(s.path_b)}
        if row is None:
            problems.append(f"{s.sample_id}: no manifest row")
        elif bad_file:
            if row["status"] != "error" or corrupt not in (row["error"] or ""):
                problems.append(f"{s.sample_id}: expected an error row naming {corrupt}, got {row['status']!r} "
                                f"({row['error']!r})")
        elif row["status"] != "ok":
            problems.append(f"{s.sample_id}: status {row['status']!r}: {row['error']}")
        elif row["caption_a"] is None or row["text_a"] is None or row["class_map"] is None:
            problems.append(f"{s.sample_id}: ok row without caption, text features or class map")
    return problems


def run_smoke(out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Build the tiny models and dataset under ``out_dir`` (once), annotate (resuming), check; the report."""
    from transformers.utils import logging as hf_logging

    from annotate.runner import run_annotation
    from manifests import list_parts

    hf_logging.disable_progress_bar()  # tiny models: loading bars are noise
    out = Path(out_dir)
    t0 = time.perf_counter()
    models = build_tiny_models(out / "models")
    build_s = time.perf_counter() - t0
    config = _write_config(out / "models" / "smoke.yaml")
    make_vif_dataset(out / "data")
    summary = run_annotation("vif", out / "data", out / "manifest", dataset="smoke-vif", config_path=config,
                             model_dir=out / "models", batch_size=2, rows_per_part=4, progress=progress)
    problems = check_manifest(out / "manifest", out / "data")
    per_image = {k: v["seconds"] / v["items"] for k, v in summary.timings.items() if v["items"]}
    report = {
        "ok": not problems, "problems": problems, "models": models,
        "manifest": str(out / "manifest"), "parts": [p.name for p in list_parts(out / "manifest")],
        "samples": summary.samples, "skipped": summary.skipped, "annotated": summary.written,
        "errors_this_run": summary.errors, "build_models_seconds": build_s,
        "timings": summary.timings, "seconds_per_item": per_image,
        "total_seconds": time.perf_counter() - t0,
    }
    (out / "smoke_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def time_models(out_dir: str | Path, n_images: int = 4, device: str | None = None) -> dict[str, dict[str, float]]:
    """Per-model cost of the tiny models on ``n_images`` generated images: load seconds and seconds/image
    for caption, grounding, text encoding, detection and segmentation (builds the models if needed)."""
    import transformers
    from PIL import Image

    from annotate.models import Florence2, GroundingDino, Sam, T5TextEncoder

    paths = build_tiny_models(Path(out_dir) / "models")
    for name in ("Florence2ForConditionalGeneration", "T5EncoderModel", "GroundingDinoForObjectDetection", "SamModel",
                 "AutoProcessor", "AutoTokenizer"):
        getattr(transformers, name)  # resolve transformers' lazy imports outside the timed loads
    rng = np.random.default_rng(0)
    h, w = IMAGE_SIZE
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(n_images)]
    boxes = [np.array([[4, 4, 30, 40], [20, 10, 60, 44]], np.float32)] * n_images
    o = SMOKE_OVERRIDES
    result: dict[str, dict[str, float]] = {}

    def timed(name: str, load: Any, call: Any) -> None:
        t0 = time.perf_counter()
        model = load()
        t1 = time.perf_counter()
        call(model)
        t2 = time.perf_counter()
        result[name] = {"load_seconds": t1 - t0, "seconds_per_image": (t2 - t1) / n_images}

    flo = lambda: Florence2(paths["captioner"], device=device, max_new_tokens=o["caption"]["max_new_tokens"],
                            grounding_max_new_tokens=o["grounding"]["max_new_tokens"])
    timed("florence2_caption", flo, lambda m: m.caption(images))
    timed("florence2_grounding", flo, lambda m: m.ground(images, ["a person near a car"] * n_images))
    timed("t5_encoder", lambda: T5TextEncoder(paths["text_encoder"], device=device),
          lambda m: m.encode(["a person walks near a parked car at night"] * n_images))
    timed("grounding_dino", lambda: GroundingDino(paths["detector"], device=device),
          lambda m: m.detect(images, ["person", "car", "lamp"]))
    timed("sam", lambda: Sam(paths["segmenter"], device=device), lambda m: m.segment(images, boxes))
    return result


def register(app: typer.Typer) -> None:
    """Add the ``smoke`` command to the ``annotate`` CLI."""

    @app.command("smoke")
    def smoke_cmd(
        out: Path = typer.Option(..., help="work folder: models/, data/, manifest/, smoke_report.json"),
        progress: bool = typer.Option(True, help="show a progress bar"),
    ) -> None:
        """Offline install check: tiny random-weight models annotate a small generated VIF dataset."""
        report = run_smoke(out, progress=progress)
        for name, t in sorted(report["timings"].items()):
            typer.echo(f"  {name:18s} {t['seconds']:8.3f} s  ({int(t['items'])} items)")
        typer.echo(f"{report['samples']} samples, {report['skipped']} already done, {report['annotated']} annotated "
                   f"now; manifest {report['manifest']} ({len(report['parts'])} parts)")
        if not report["ok"]:
            for p in report["problems"]:
                typer.echo(f"problem: {p}", err=True)
            raise typer.Exit(1)
        typer.echo("smoke OK")
