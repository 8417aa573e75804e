"""Why a model trained on the world's pictures can fire far more on the world's video: boxes shown a frame, objects
found and false boxes, on the video as decoded and with one difference from the training pictures taken away at a
time (the codec, the scale, the batch-norm statistics), on the empty background, and on held-out pictures for scale.

    python benchmarks/video_domain.py --weights TRAINED/best.pth     # on the quality benchmark's world
    python benchmarks/video_domain.py --weights best.pth --world DIR # a world quality.py wrote elsewhere

The model's architecture and --imgsz come from the settings.json train.py wrote beside the checkpoint. Everything
runs in PyTorch fp32 on the CPU, at the score threshold the scripts show (0.5), with the proposals they keep (1000).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from common import ROOT, machine, machine_line, reference_input, table
from torch import nn

from frcnn.core.arguments import positive_int
from frcnn.core.boxes import greedy_pairs, overlap_matrix, xywh_to_xyxy
from frcnn.model import build_detector, max_size_for, read_checkpoint
from frcnn.runtimes.cache import cache_dir
from frcnn.synthetic import world

SHOWN_SCORE, MATCH_IOU = 0.5, 0.5
FALSE_KINDS = ("other class", "duplicate", "poor fit", "background")
# Where each batch norm of a torchvision Faster R-CNN lies (v1 from scratch has them in the ResNet only).
REGIONS = (("backbone", "backbone.body."), ("FPN", "backbone.fpn."), ("box head", "roi_heads.box_head."))
# quality.py's world: the video is drawn from its seed + 3 (world.json holds the seed and the frame count).
VIDEO_SEED_OFFSET = 3


# ---------------------------------------------------------------- inputs: (picture, truth boxes x1y1x2y2, classes)


def held_out_pictures(split: Path, count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The first `count` pictures of a world split, with their objects."""
    dataset = json.loads((split / "annotations.json").read_text())
    images = sorted(dataset["images"], key=lambda image: image["id"])[:count]
    items = []
    for image in images:
        objects = [a for a in dataset["annotations"] if a["image_id"] == image["id"]]
        items.append((cv2.imread(str(split / "images" / image["file_name"])),
                      xywh_to_xyxy([a["bbox"] for a in objects]), np.array([a["category_id"] for a in objects])))
    return items


def empty_pictures(split: Path, count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Backgrounds drawn as the split's pictures are (its seed and size, JPEG as it stores them), with no object."""
    info = json.loads((split / "annotations.json").read_text())["info"]
    items = []
    for index in range(count):
        picture = world.draw_picture(info["seed"], 10_000 + index, tuple(info["size"]), objects=(0, 0))[0]
        stored = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, world.JPEG_QUALITY])[1]
        items.append((cv2.imdecode(stored, cv2.IMREAD_COLOR), np.zeros((0, 4)), np.zeros(0, int)))
    return items


def drawn_frames(seed: int, frames: int, every: int, objects: int = 8) -> list[tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray]]:
    """Every `every`-th frame of the video as drawn, before any encoding."""
    items = []
    for number, (picture, rows) in enumerate(world.video_frames(seed, frames, objects=objects)):
        if number % every == 0:
            items.append((picture, xywh_to_xyxy([box for _, box, _ in rows]),
                          np.array([track.look.category_id for track, _, _ in rows], int)))
    return items


def decoded_frames(seed: int, frames: int, every: int, scratch: Path, objects: int = 8) -> list[tuple]:
    """The same frames after the world's own mp4v encoding, as OpenCV decodes them (the truth is the drawn one)."""
    video, _ = world.write_video(scratch / f"video-{objects}", seed, frames, objects=objects)
    capture = cv2.VideoCapture(str(video))
    truth = drawn_frames(seed, frames, 1, objects)
    items = []
    for number in range(frames):
        ok, picture = capture.read()
        if not ok:
            break
        if number % every == 0:
            items.append((picture, *truth[number][1:]))
    capture.release()
    return items


# ---------------------------------------------------------------- the model


def trained_model(weights: Path) -> tuple[nn.Module, dict]:
    """The checkpoint in PyTorch, eval mode, and the settings train.py wrote beside it."""
    settings = json.loads((weights.parent / "settings.json").read_text())
    state = read_checkpoint(weights)
    classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    module = build_detector(settings["model"], classes, settings["imgsz"])
    module.load_state_dict(state, strict=False)
    return module.eval(), settings


def batch_norms(module: nn.Module) -> dict[str, nn.BatchNorm2d]:
    return {name: layer for name, layer in module.named_modules() if isinstance(layer, nn.BatchNorm2d)}


def recalibrated(module: nn.Module, split: Path, settings: dict, pictures: int) -> nn.Module:
    """A copy whose batch-norm statistics are the exact averages over `pictures` training pictures, taken in training
    batches as train.py makes them (its box-head samples included), instead of the running averages of training."""
    copy_ = copy.deepcopy(module)
    torch.manual_seed(0)  # the box-head samples are drawn at random: the same ones every run
    for layer in batch_norms(copy_).values():
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over every batch seen
    items = held_out_pictures(split, pictures)
    copy_.train()
    copy_.roi_heads.fg_bg_sampler.batch_size_per_image = settings.get("box_batch", 512)
    batch = settings.get("batch", 4)
    with torch.no_grad():
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            copy_([reference_input(picture) for picture, _, _ in chunk],
                  [{"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "labels": torch.as_tensor(classes, dtype=torch.int64)} for _, boxes, classes in chunk])
    return copy_.eval()


# ---------------------------------------------------------------- measuring


def measure(module: nn.Module, items: list[tuple], imgsz: int) -> dict:
    """At --imgsz `imgsz`, per picture: shown boxes, objects, objects found (same class, IoU >= 0.5, one to one),
    false boxes; false boxes per 160x160 of model input; and how far each region's batch-norm inputs lie from the
    statistics it normalises with (the channels' mean |batch mean - running mean| / running std)."""
    shifts: dict[str, list[float]] = {}

    def record(name: str):
        def hook(layer: nn.BatchNorm2d, inputs: tuple[torch.Tensor]) -> None:
            mean = inputs[0].detach().float().mean(dim=(0, 2, 3))
            spread = torch.sqrt(layer.running_var + layer.eps)
            shifts.setdefault(name, []).append(float(((mean - layer.running_mean).abs() / spread).mean()))
        return hook

    module.transform.min_size, module.transform.max_size = (imgsz,), max_size_for(imgsz)
    handles = [layer.register_forward_pre_hook(record(name)) for name, layer in batch_norms(module).items()]
    shown = objects = found = 0
    kinds = dict.fromkeys(FALSE_KINDS, 0)
    area = 0.0
    try:
        with torch.no_grad():
            for picture, truth, classes in items:
                output = module([reference_input(picture)])[0]
                keep = output["scores"] >= SHOWN_SCORE
                boxes, labels = output["boxes"][keep].numpy(), output["labels"][keep].numpy()
                same_class = classes[:, None] == labels[None, :]
                overlaps = overlap_matrix(truth, boxes)
                pairs = greedy_pairs(overlaps, MATCH_IOU, allowed=same_class)
                found += len(pairs)
                for kind in false_kinds(overlaps, same_class, {column for _, column in pairs}):
                    kinds[kind] += 1
                shown, objects = shown + len(boxes), objects + len(truth)
                scale = imgsz / min(picture.shape[:2])
                area += picture.shape[0] * picture.shape[1] * scale * scale / 160 ** 2
    finally:
        for handle in handles:
            handle.remove()
    count = max(1, len(items))
    region_shift = {region: float(np.mean([v for name, values in shifts.items() if name.startswith(prefix)
                                           for v in values]))
                    for region, prefix in REGIONS if any(name.startswith(prefix) for name in shifts)}
    return {"pictures": len(items), "shown": shown / count, "objects": objects / count, "found": found / count,
            "false": (shown - found) / count, "false_per_160": (shown - found) / max(area, 1e-9),
            "false_kinds": {kind: number / count for kind, number in kinds.items()}, "bn_shift": region_shift}


def false_kinds(overlaps: np.ndarray, same_class: np.ndarray, matched: set[int]) -> list[str]:
    """What each shown box that found no object lies on: an object of another class (IoU >= 0.5), an object of its
    class that another box found (a duplicate), part of an object or of several (IoU 0.1 to 0.5), or nothing."""
    kinds = []
    for column in range(overlaps.shape[1]):
        if column in matched:
            continue
        best = overlaps[:, column].max() if overlaps.shape[0] else 0.0
        if best >= MATCH_IOU:
            kinds.append("duplicate" if same_class[overlaps[:, column].argmax(), column] else "other class")
        else:
            kinds.append("poor fit" if best >= 0.1 else "background")
    return kinds


def rows_of(module: nn.Module, settings: dict, world_dir: Path, video_seed: int, frames: int, every: int,
            pictures: int, scratch: Path) -> dict[str, dict]:
    imgsz = settings["imgsz"]
    held_out = held_out_pictures(world_dir / "val", pictures)
    decoded, drawn = decoded_frames(video_seed, frames, every, scratch), drawn_frames(video_seed, frames, every)
    native = max(360, imgsz)  # the video's own height: objects as large as they were drawn
    steps = [
        ("held-out pictures (as trained)", lambda: measure(module, held_out, imgsz)),
        ("video, decoded (what tracking sees)", lambda: measure(module, decoded, imgsz)),
        ("video, drawn (no codec)", lambda: measure(module, drawn, imgsz)),
        (f"video, decoded, --imgsz {native}", lambda: measure(module, decoded, native)),
        (f"video, drawn, --imgsz {native}", lambda: measure(module, drawn, native)),
        ("video background alone, decoded",
         lambda: measure(module, decoded_frames(video_seed, frames, every, scratch, objects=0), imgsz)),
        ("video background alone, drawn", lambda: measure(module, drawn_frames(video_seed, frames, every, 0), imgsz)),
        ("picture backgrounds alone", lambda: measure(module, empty_pictures(world_dir / "val", pictures), imgsz)),
    ]
    rows = {}
    for label, step in steps:
        started = time.perf_counter()
        rows[label] = step()
        print(f"[{time.strftime('%H:%M:%S')}] {label}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    started = time.perf_counter()
    fixed = recalibrated(module, world_dir / "train", settings, pictures * 4)
    print(f"[{time.strftime('%H:%M:%S')}] batch norm recalibrated: {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    rows["held-out pictures, batch norm recalibrated"] = measure(fixed, held_out, imgsz)
    rows["video, decoded, batch norm recalibrated"] = measure(fixed, decoded, imgsz)
    rows["video, drawn, batch norm recalibrated"] = measure(fixed, drawn, imgsz)
    return rows


def format_rows(rows: dict[str, dict]) -> str:
    regions = [region for region, _ in REGIONS if any(region in row["bn_shift"] for row in rows.values())]
    return table(["input", "pictures", "objects / picture", "shown / picture", "found / picture", "false / picture",
                  *(f"false: {kind}" for kind in FALSE_KINDS), "false per 160x160 seen",
                  *(f"BN shift: {region}" for region in regions)],
                 [[label, row["pictures"], f"{row['objects']:.1f}", f"{row['shown']:.1f}", f"{row['found']:.1f}",
                   f"{row['false']:.1f}", *(f"{row['false_kinds'][kind]:.1f}" for kind in FALSE_KINDS),
                   f"{row['false_per_160']:.2f}",
                   *(f"{row['bn_shift'].get(region, float('nan')):.2f}" for region in regions)]
                  for label, row in rows.items()])


def quality_world() -> Path:
    """The newest world the quality benchmark wrote in the user cache."""
    found = sorted((cache_dir() / "quality").glob("world-*/world.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("error: no world in the cache: run benchmarks/quality.py first, or give --world DIR")
    return found[-1].parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="a best.pth train.py wrote (settings.json beside)")
    parser.add_argument("--world", type=Path, help="the world quality.py wrote (default: the newest in the cache)")
    parser.add_argument("--every", type=positive_int, default=5, help="measure every N-th video frame (default 5)")
    parser.add_argument("--pictures", type=positive_int, default=40,
                        help="held-out pictures and empty backgrounds measured (default 40; 4x as many training "
                             "pictures recalibrate batch norm)")
    parser.add_argument("--json-out", type=Path, default=ROOT / "outputs" / "video_domain.json")
    args = parser.parse_args()
    world_dir = args.world or quality_world()
    size = json.loads((world_dir / "world.json").read_text())
    module, settings = trained_model(args.weights)
    with tempfile.TemporaryDirectory() as scratch:
        rows = rows_of(module, settings, world_dir, size["seed"] + VIDEO_SEED_OFFSET, size["video_frames"],
                       args.every, args.pictures, Path(scratch))
    report = {"machine": machine(), "weights": str(args.weights), "model": settings["model"],
              "imgsz": settings["imgsz"], "rows": rows}
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2))
    print(machine_line(report["machine"]))
    print(f"{settings['model']} from {args.weights} at --imgsz {settings['imgsz']}; every {args.every}th frame of "
          f"the {size['video_frames']}-frame video")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
