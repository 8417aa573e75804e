"""The one harness every benchmark uses: the machine a table was measured on, the weights and media it ran with, how
a configuration runs in a child process of its own and hands back JSON, the original-style eager loop that the
project's paths are compared with, and the one way tables are laid out.

Importing this module puts the project first on the import path (a benchmark runs as a script from benchmarks/).

Child processes come in two kinds, both read as JSON, never from a human line:
  - a benchmark's own configuration: `run_child(script, config)` runs `python script --child CONFIG` and reads the
    JSON object the child prints last on stdout (`child_result` prints it);
  - a project script as a user runs it: `run_script` (`detect_image.py --json` writes a JSON file per picture);
    `detect_video` runs detect_video.py with --json and reads its frame records and the speed line's figures,
    which it prints as JSON after the line (the `speed-json:` line).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
SHARED_MEDIA = ROOT.parent / "shared" / "media"
SAMPLES = ROOT / "frcnn" / "samples"  # the sample photo and clip, package data
CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
SPEED_JSON_PREFIX = "speed-json: "  # frcnn.video.pipeline.SPEED_JSON_PREFIX, without importing the pipeline here


def use_the_project() -> None:
    """Put the project first on the import path, before anything beside this file."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


use_the_project()

from frcnn.core.tables import MISSING, format_table  # noqa: E402  (the project is importable from here on)

# ---------------------------------------------------------------- the machine


def cpu_description() -> dict:
    """The CPU's model name and which of the vector extensions of interest it has (a list, and each as a bool)."""
    from frcnn.core.cpu import cpu_flags

    model = platform.processor() or platform.machine()
    try:
        model = next(line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.partition(":")[0].strip() == "model name")
    except (OSError, StopIteration):
        pass
    flags = cpu_flags() or set()
    return {"cpu": model, "cpu_flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
            "flags": {f: f in flags for f in CPU_FLAGS_OF_INTEREST}}


def machine() -> dict:
    """The CPU, cores, threads, and the versions that decide speed."""
    import torch

    info = {**cpu_description(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}
    if importlib.util.find_spec("openvino") is not None:
        import openvino

        info["openvino"] = openvino.__version__
    return info


def machine_line(info: dict) -> str:
    """One line to print above every table: CPU, which vector extensions of interest it has and has not, cores and
    threads, the runtimes' versions."""
    absent = [flag for flag, present in info["flags"].items() if not present]
    flags = " ".join(info["cpu_flags"]) or "none of interest"
    flags += f" (not: {' '.join(absent)})" if absent else ""
    return (f"CPU: {info['cpu']}, {info['cores']} cores"
            + (f" ({info['torch_threads']} torch threads)" if "torch_threads" in info else "")
            + f", flags: {flags}; torch {info['torch']}"
            + (f", OpenVINO {info['openvino']}" if "openvino" in info else ""))


def machine_busy() -> tuple[float, float]:
    """Seconds of CPU time the whole machine has spent busy, and stolen by the hypervisor, so far."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return (float("nan"), float("nan"))
    user, nice, system, _, _, irq, softirq, steal = ticks
    hertz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hertz, steal / hertz


def others_load(before: tuple[float, float], own_cpu: float, seconds: float) -> dict:
    """Cores kept busy by other processes (and stolen by the hypervisor) while this one was timed: the machine is
    shared, and timings taken while others compute are slower by about their share."""
    busy, steal = machine_busy()
    return {"cores": max(0.0, (busy - before[0] - own_cpu) / seconds), "steal": (steal - before[1]) / seconds}


def children_cpu() -> float:
    """CPU seconds of this process and of its finished children (the scripts it ran): ours, not the others'."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + time.process_time()


class OthersLoad:
    """The load other processes put on the machine from its making until `others()`."""

    def __init__(self):
        self.before, self.cpu, self.start = machine_busy(), time.process_time(), time.perf_counter()

    def others(self) -> dict:
        return others_load(self.before, time.process_time() - self.cpu, time.perf_counter() - self.start)


# ---------------------------------------------------------------- weights and media


def default_media(name: str, fallback: Path) -> Path:
    """A file of the shared media folder, or `fallback` where that folder does not have it."""
    path = SHARED_MEDIA / name
    return path if path.exists() else fallback


def seeded_weights(name: str, folder: Path) -> Path:
    """Seeded random weights with one class boosted (detections exist; speed does not depend on values)."""
    from frcnn.synthetic.checkpoints import detector_state, save_checkpoint

    path = folder / f"{name}-seeded.pth"
    if not path.exists():
        save_checkpoint(path, detector_state(name))
    return path


def weights_for(name: str, folder: Path) -> tuple[Path, str]:
    """The official COCO weights when they are cached here, else seeded random ones; and which they are."""
    from frcnn.model import official_weights_path

    official = official_weights_path(name)
    if official.exists():
        return official, "COCO"
    return seeded_weights(name, folder), "seeded random"


def installed_backends() -> list[str]:
    from frcnn.model import backend_installed

    return [b for b in ("torch", "onnxruntime", "openvino") if backend_installed(b)]


def clip_of(height: int) -> Path:
    """scooters.mp4 (or the sample clip) scaled to `height` px high, made once in the user cache: what a user's
    800-px video costs to decode, draw and encode."""
    import cv2

    from frcnn.runtimes.cache import cache_dir

    source = default_media("scooters.mp4", SAMPLES / "sample.mp4")
    path = cache_dir() / "benchmarks" / f"{source.stem}-{height}p.mp4"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(source))
    width = round(capture.get(cv2.CAP_PROP_FRAME_WIDTH) * height / capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.mp4")
    writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), capture.get(cv2.CAP_PROP_FPS),
                             (width, height))
    for _ in range(120):  # enough for any --video-frames used here
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC))
    writer.release()
    capture.release()
    os.replace(temporary, path)
    return path

# ---------------------------------------------------------------- child processes


class ChildFailed(RuntimeError):
    """A child process exited with an error; the message ends with the tail of its stderr (when captured)."""

    def __init__(self, what: str, returncode: int, stderr: str | None):
        super().__init__(f"{what} failed (exit {returncode})" + (f":\n{stderr[-3000:]}" if stderr else ""))
        self.returncode = returncode


def _run(command: Sequence[str | Path | int], what: str, env: dict | None = None, timeout: float | None = None,
         progress: bool = False) -> subprocess.CompletedProcess:
    """Run a child to its end, its stdout captured; its stderr too, unless `progress` sends it to ours as it comes.
    A Ctrl-C in a terminal reaches the child as well (one process group): it is left to stop by itself, keeping what
    it finished, unless a second Ctrl-C says not to; then the KeyboardInterrupt goes on."""
    with subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE,
                          stderr=None if progress else subprocess.PIPE, text=True, env=env) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except KeyboardInterrupt:
            try:
                child.wait()
            except KeyboardInterrupt:
                child.kill()
            raise
        except subprocess.TimeoutExpired:
            child.kill()
            raise
    if child.returncode != 0:
        raise ChildFailed(what, child.returncode, stderr)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def run_child(script: str | Path, config: dict, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run one configuration of a benchmark in a process of its own (`script --child CONFIG`); its JSON result."""
    what = " ".join(str(config[k]) for k in ("kind", "model", "path", "mode") if k in config)
    completed = _run([sys.executable, script, "--child", json.dumps(config)], what, env, timeout)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def child_result(result: dict) -> None:
    """What a child process hands back: its result and its own peak resident memory, as the last stdout line."""
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print(json.dumps(result), flush=True)


def run_script(script: str, arguments: Sequence[str | Path | int], env: dict | None = None,
               timeout: float | None = None, progress: bool = False) -> subprocess.CompletedProcess:
    """One of the project's scripts (detect_image.py, detect_video.py, train.py, ...) as a user runs it; with
    `progress`, its stderr (progress bars, status) shows as it comes."""
    return _run([sys.executable, ROOT / script, *arguments], script, env, timeout, progress)


def detect_video(video: Path, model: str, weights: Path, imgsz: int, frames: int, out: Path,
                 options: Sequence[str] = (), env: dict | None = None) -> dict:
    """detect_video.py with --json on the CPU: its speed figures (frames, seconds, frames_per_second and
    inference_ms_per_frame, model loading excluded), its frame records, and the peak memory of the process."""
    completed = run_script("detect_video.py", ["--input", video, "--model", model, "--weights", weights, "--imgsz",
                                               imgsz, "--max-frames", frames, "--output", out, "--json",
                                               "--device", "cpu", *options], env)
    figures = json.loads(next(line[len(SPEED_JSON_PREFIX):] for line in completed.stdout.splitlines()
                              if line.startswith(SPEED_JSON_PREFIX)))
    records = [json.loads(line) for line in (out / f"{video.stem}_{model}.jsonl").read_text().splitlines()]
    return {**figures, "records": records, "peak_rss_mb": children_peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    """The largest peak resident memory of the finished child processes so far."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# ---------------------------------------------------------------- the original-style reference


def reference_model(name: str, weights: Path, imgsz: int, proposals: int = 1000):
    """torchvision's builder and the checkpoint, nothing of the project's loading path."""
    import torch
    import torchvision

    builder = {"v1": torchvision.models.detection.fasterrcnn_resnet50_fpn,
               "v2": torchvision.models.detection.fasterrcnn_resnet50_fpn_v2}[name]
    module = builder(weights=None, weights_backbone=None, min_size=imgsz, max_size=round(imgsz * 1333 / 800),
                     rpn_post_nms_top_n_test=proposals)
    # Built with plain batch norm; torchvision's released v1 freezes it, which computes the same in eval mode.
    module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=False)
    return module.eval()


def reference_input(image_bgr):
    """As the original scripts did: BGR→RGB, ToTensor."""
    import cv2
    from torchvision import transforms

    return transforms.ToTensor()(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))


def reference_predict(module, image_bgr):
    """As the original scripts did: ToTensor, no_grad, one picture; boxes, scores and labels as arrays."""
    import torch

    with torch.no_grad():
        output = module([reference_input(image_bgr)])[0]
    return output["boxes"].numpy(), output["scores"].numpy(), output["labels"].numpy()


def run_video_reference(config: dict) -> dict:
    """The original-style video loop: read, ToTensor, no_grad model, draw, mp4v write; FPS over the loop."""
    import cv2
    import numpy as np

    module = reference_model(config["model"], Path(config["weights"]), config["imgsz"])
    capture = cv2.VideoCapture(config["video"])
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    output = Path(config["scratch"]) / f"reference_{config['model']}.mp4"
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    frames = 0
    start = time.perf_counter()
    while frames < config["frames"]:
        ok, frame = capture.read()
        if not ok:
            break
        boxes, scores, labels = reference_predict(module, frame)
        for box in boxes[scores >= 0.5].astype(np.int32):
            cv2.rectangle(frame, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), (0, 0, 255), 2)
        writer.write(frame)
        frames += 1
    elapsed = time.perf_counter() - start
    writer.release()
    return {"frames": frames, "fps": frames / elapsed}



def show_and_save(text: str, report: dict, path: Path) -> None:
    """Print a benchmark's tables and write its report as JSON to `path`."""
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path}")

# ---------------------------------------------------------------- tables


def table(header: Sequence[str], rows: Sequence[Sequence[str | None]]) -> str:
    """The benchmarks' tables: columns joined by " | ", left-aligned, None shown as MISSING ("-")."""
    cells = [[MISSING if c is None else str(c) for c in row] for row in [header, *rows]]
    return format_table(cells, separator=" | ", numbers_right=False)
