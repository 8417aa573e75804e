"""Plain, picklable descriptions of what a run uses: built once from the options in each script's `main`.

Nothing here imports PyTorch, so parsing options (and `--help`) stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAMES = ("v1", "v2")
DEFAULT_IMGSZ = 800
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
DEFAULT_THRESHOLD = 0.5
DEFAULT_PROPOSALS = 1000  # torchvision's rpn_post_nms_top_n_test
PRECISIONS = ("fp32", "int8", "bf16")
# torchvision resizes the shorter side to 800 and caps the longer side at 1333; keep that ratio.
_MAX_SIZE_RATIO = 1333 / 800


def max_size_for(imgsz: int) -> int:
    """The cap on the longer side that goes with a shorter side of `imgsz`, in torchvision's proportion."""
    return round(imgsz * _MAX_SIZE_RATIO)


@dataclass(frozen=True)
class ModelSpec:
    """Which model, with which weights and labels, at what size, on which device and runtime. What it leaves open
    is read beside a train.py checkpoint when it is loaded (`frcnn.core.checkpoint_files.complete_spec`)."""

    name: str | None = None  # "v1" or "v2"; None: a checkpoint's own architecture, v2 for the COCO weights
    weights: str | None = None  # a local checkpoint; None: the official COCO weights
    labels: str | None = None  # class names of a fine-tuned checkpoint; None: the labels.txt beside it, else COCO's
    imgsz: int | None = None  # None: the size a train.py checkpoint was trained at (its settings.json), else 800
    device: str = "auto"
    backend: str = "auto"
    half: bool = False
    proposals: int = DEFAULT_PROPOSALS  # region proposals per picture that reach the box head
    precision: str = "fp32"  # fp32, int8 or bf16 (the CPU with OpenVINO)
    calibration: tuple[str, ...] = ()  # pictures or videos an int8 model is calibrated on
    threads: int = 0  # CPU threads the runtime may use (0: its default, every core); set for Ray workers
    imgsz_from: str | None = None  # the settings file imgsz was read from, where it was not given
    name_from: str | None = None  # the settings file the name was read from, where it was not given


@dataclass(frozen=True)
class SliceOptions:
    """Sliced inference: square tiles of `size` picture pixels (0: chosen from each picture's size)."""

    size: int = 0
    overlap: float = 0.2
    merge: str = "greedy-nmm"  # or "nms"
    match: str = "ios"  # or "iou"
    match_threshold: float = 0.5
    full_pass: bool = True


@dataclass(frozen=True)
class DetectOptions:
    """What every model of a run keeps: the score threshold, the classes (None: all) and slicing (None: off)."""

    threshold: float = DEFAULT_THRESHOLD
    classes: frozenset[int] | None = None
    slicing: SliceOptions | None = None
    # With a tracker, `threshold` is lowered to its low-score floor; this keeps the one the user asked for (shown).
    asked_threshold: float | None = None


@dataclass(frozen=True)
class DrawOptions:
    """How boxes are labelled: names and scores, names only, or no labels; the box line width (None: scaled)."""

    hide_labels: bool = False
    hide_conf: bool = False
    line_width: int | None = None


@dataclass(frozen=True)
class CountLine:
    """A counting line: its name (None: the one unnamed line) and its ends, in pixels or fractions of the frame."""

    points: tuple[float, float, float, float]
    name: str | None = None


@dataclass(frozen=True)
class Zone:
    """A named polygon, as (x, y) pairs in pixels or fractions of the frame (when every value is within [0, 1])."""

    name: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class SpeedOptions:
    """Speed from the picture: metres per pixel (a top-down view), or four picture points of a W x H metre
    rectangle (a perspective transform); shown in `unit`, smoothed over `window` seconds."""

    meters_per_pixel: float | None = None
    corners: tuple[tuple[float, float], ...] | None = None  # the rectangle's corners, in order around it
    rectangle: tuple[float, float] | None = None  # its width and height in metres
    unit: str = "km/h"
    window: float = 0.5


@dataclass(frozen=True)
class AnalyticsOptions:
    """What is measured on the tracks: lines, zones, speed, a heatmap, one crop per track."""

    lines: tuple[CountLine, ...] = ()
    zones: tuple[Zone, ...] = ()
    anchor: str = "bottom"  # the point of a box that is in a zone, on the heatmap, and moves: bottom centre, or centre
    speed: SpeedOptions | None = None
    heatmap: bool = False
    heatmap_half_life: float = 0.0  # seconds for the drawn heat to halve (0: it never fades)
    crops: bool = False

    @property
    def enabled(self) -> bool:
        """Whether anything is measured (and the analytics' files written)."""
        return bool(self.lines or self.zones or self.speed or self.heatmap or self.crops)


@dataclass(frozen=True)
class TrackOptions:
    """Tracking in video: IDs across frames, trails, detection on every Nth frame only, and the analytics on top."""

    trails: int = 0  # centre points drawn per track (0: none)
    detect_every: int = 1
    lost_seconds: float = 1.0  # how long a track that is not seen keeps its ID
    analytics: AnalyticsOptions = AnalyticsOptions()


@dataclass(frozen=True)
class RayOptions:
    """Running on a Ray cluster: its address (None: a local Ray for the run, or RAY_ADDRESS), and the workers."""

    address: str | None = None
    workers: int | None = None  # None: as many as the cluster's resources allow
    cpus_per_worker: float | None = None  # None: 1, or more when there are fewer inputs than the cluster's CPUs
    gpus_per_worker: float | None = None  # None: 1 where the cluster has GPUs, else 0


def model_names(option: str) -> list[str]:
    """The models a --model option names: "both" is v1 then v2."""
    return list(MODEL_NAMES) if option == "both" else [option]
