"""Fine-tune Faster R-CNN v1 or v2 on your own boxes (COCO, YOLO, Ultralytics data.yaml or Pascal VOC), validating
box mAP every epoch.

    python train.py --model v2 --images my/images --annotations my/train.json --val-images my/val \\
        --val-annotations my/val.json --epochs 12
    python train.py --model v1 --data my_yolo_set/ --imgsz 512 --box-batch 128
    python train.py --model v2 --data roboflow_export/data.yaml --patience 5
    python train.py --resume outputs/train/v2

Writes into --output: best.pth and last.pth (plain state_dicts for detect_image.py --weights, with --labels
labels.txt), settings.json, results.csv, steps.csv, curves.png and resume/state.pth.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from tqdm import tqdm

from frcnn.cli import options
from frcnn.cli import shared as du
from frcnn.core.errors import FrcnnError
from frcnn.core.specs import DEFAULT_IMGSZ, MODEL_NAMES, ModelSpec
from frcnn.core.tables import percent
from frcnn.training.data import TrainingData, data_source, load_training_data, own_split
from frcnn.training.run_folder import BEST, LABELS, STATE, RunFolder
from frcnn.training.settings import DEFAULT_VAL_FRACTION, SCHEDULES, DataSource, TrainSettings, reference_lr

# PyTorch, and what needs it, is imported once the options and the data are known to be good.

DEFAULT_EPOCHS = 26  # torchvision's detection reference
DEFAULT_BATCH = 4
DEFAULT_TRAINABLE_LAYERS = 3  # torchvision's default when fine-tuning trained weights
DEFAULT_BOX_BATCH = 512  # torchvision's box_batch_size_per_image
# What --resume may be given with: they change where and how fast the run goes, not its results.
RESUME_OPTIONS = ("resume", "workers", "device", "ray", "cpus_per_worker")


def _default_workers() -> int:
    return min(8, (os.cpu_count() or 2) // 2)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (COCO format: --images and --annotations; the others: --data)")
    data.add_argument("--images", metavar="DIR", help="training pictures of a COCO-format set")
    data.add_argument("--annotations", metavar="FILE", help="their COCO annotation file (class names: its categories, "
                                                            "in id order)")
    data.add_argument("--data", metavar="PATH",
                      help="an Ultralytics / Roboflow data.yaml, or a folder holding one (its train split; its val "
                           "split validates); a Pascal VOC tree (Annotations/, JPEGImages/, ImageSets/Main/train.txt "
                           "and val.txt); or a YOLO-format folder: pictures under DIR/images/, DIR/labels/<same "
                           "path>.txt with lines 'class cx cy w h' (fractions; class 0-based), and classes.txt (in "
                           "DIR, DIR/labels/ or DIR/labels/<model>/) naming class 0, 1, ...")
    data.add_argument("--labels", metavar="FILE", help="class names of a YOLO-format set or VOC tree, one per line, "
                                                       "instead of its classes.txt (VOC: the objects' names)")
    data.add_argument("--val-images", metavar="DIR", help="validation pictures of a COCO-format set")
    data.add_argument("--val-annotations", metavar="FILE", help="their COCO annotation file")
    data.add_argument("--val-data", metavar="PATH", help="a validation set as --data takes them (of a data.yaml or "
                                                          "VOC tree: its val split)")
    data.add_argument("--val-fraction", type=options.fraction, metavar="F",
                      help=f"without a validation set: hold out this seeded random share of the training pictures "
                           f"(default {DEFAULT_VAL_FRACTION}, at least one picture; 0: no validation, best.pth is "
                           f"then the latest epoch's)")


def _add_start_options(parser: argparse.ArgumentParser) -> None:
    start = parser.add_argument_group("where training starts (default: the COCO weights)")
    begin = start.add_mutually_exclusive_group()
    begin.add_argument("--weights", metavar="PATH", help="a checkpoint of this project (best.pth, last.pth) or any "
                                                         "v1/v2 state_dict: the same classes continue its box "
                                                         "predictor, other classes replace it")
    begin.add_argument("--from-scratch", action="store_true", help="random weights, every layer trained")
    start.add_argument("--trainable-layers", type=options.backbone_layers, metavar="N",
                       help=f"backbone stages trained when starting from weights, 0..5 from the top "
                            f"(default {DEFAULT_TRAINABLE_LAYERS}, as torchvision's reference)")


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    recipe = parser.add_argument_group("recipe (torchvision's detection reference: SGD, momentum 0.9, "
                                       "weight decay 1e-4, linear warm-up)")
    recipe.add_argument("--epochs", type=options.positive_int, default=DEFAULT_EPOCHS, metavar="N",
                        help=f"passes over the training set (default {DEFAULT_EPOCHS})")
    recipe.add_argument("--batch", type=options.positive_int, default=DEFAULT_BATCH, metavar="N",
                        help=f"pictures per step (default {DEFAULT_BATCH})")
    recipe.add_argument("--lr", type=options.positive_number, metavar="X",
                        help="base learning rate (default 0.02 x batch / 16)")
    recipe.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                        help="after the warm-up: cosine decay to 0 (default), or steps (10x lower at 16/26 and "
                             "22/26 of the epochs)")
    recipe.add_argument("--imgsz", type=options.imgsz, default=DEFAULT_IMGSZ, metavar="N",
                        help=f"shorter side the model sees, in pixels (default {DEFAULT_IMGSZ}); use the same with "
                             f"detect_image.py")
    recipe.add_argument("--box-batch", type=options.positive_int, default=DEFAULT_BOX_BATCH, metavar="N",
                        help=f"proposals per picture the box head learns from (default {DEFAULT_BOX_BATCH}, "
                             f"torchvision's); 128 is much faster on a CPU for small pictures, above all for v2, "
                             f"whose box head has four convolutions per box")
    recipe.add_argument("--seed", type=options.non_negative_int, default=0, metavar="N",
                        help="seed of the weights, data order, augmentation and validation split (default 0)")
    recipe.add_argument("--patience", type=options.positive_int, metavar="N",
                        help="stop once validation AP has not improved for N epochs (best.pth stays the best "
                             "epoch's; default: train every epoch)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Fine-tune Faster R-CNN v1 or v2 on your own boxes.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODEL_NAMES,
                        help="v1 or v2 (default: the architecture of --weights, else v2)")
    _add_data_options(parser)
    _add_start_options(parser)
    _add_recipe_options(parser)
    run = parser.add_argument_group("running")
    run.add_argument("--device", default="auto", metavar="D",
                     help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N")
    run.add_argument("--no-amp", action="store_true", help="on CUDA, train in float32 instead of mixed precision")
    run.add_argument("--loader-workers", dest="workers", type=options.non_negative_int,
                     default=_default_workers(), metavar="N",
                     help=f"processes that read and augment pictures (default {_default_workers()}; 0: in the "
                          f"training process)")
    options.add_renamed_option(run, "--workers", "--loader-workers", "workers", options.non_negative_int)
    run.add_argument("--output", metavar="DIR", help="where the run's files go (default outputs/train/<model>); "
                                                     "running the same command again continues an unfinished run")
    run.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR with its own settings (only "
                                                     "--loader-workers, --device, --ray and --cpus-per-worker may be "
                                                     "given with it)")
    _add_ray_options(parser)
    return parser


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    ray = parser.add_argument_group(f"many GPUs or machines (Ray Train: {options.RAY_INSTALL})")
    ray.add_argument("--ray", nargs="?", const="", type=options.ray_address, metavar="ADDRESS",
                     help="train data-parallel on a Ray cluster: HOST:PORT of its head, or auto for the one started "
                          "on this machine by 'ray start'; with no address (and no RAY_ADDRESS), a local Ray for "
                          "this run (all of this machine's GPUs). The files land in --output here")
    ray.add_argument("--ray-workers", type=options.positive_int, metavar="N",
                     help="training processes, each taking --batch pictures per step (default: one per GPU of the "
                          "cluster; without GPUs, one per machine); the default --lr follows the total batch")
    ray.add_argument("--cpus-per-worker", type=options.positive_number, metavar="C",
                     help="CPUs each training process reserves (default: the cluster's CPUs shared out)")


def _data_source(args: argparse.Namespace, parser: argparse.ArgumentParser, val: bool) -> DataSource | None:
    prefix = "val_" if val else ""
    images, annotations, data = (getattr(args, prefix + key) for key in ("images", "annotations", "data"))
    flag = "--val-" if val else "--"
    if data and (images or annotations):
        parser.error(f"give {flag}data (YOLO format) or {flag}images with {flag}annotations (COCO format), not both")
    if bool(images) != bool(annotations):
        parser.error(f"{flag}images and {flag}annotations go together")
    if data:
        return data_source(data, os.path.abspath(args.labels) if args.labels and not val else None,
                           "val" if val else "train")
    if images:
        return DataSource("coco", images=os.path.abspath(images), annotations=os.path.abspath(annotations))
    return None


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainSettings:
    """The options as one value; a usage error where they do not fit together. A --model left out becomes the
    architecture of --weights (else v2), in `args` too, which names the default output folder."""
    if args.model is None:
        args.model = options.resolved_spec(ModelSpec(weights=args.weights), parser).name
    train = _data_source(args, parser, val=False)
    if train is None:
        parser.error("give the training set: --images DIR --annotations FILE (COCO), or --data PATH (data.yaml, "
                     "VOC or YOLO)")
    if args.labels and train.format not in ("yolo", "voc"):
        parser.error("--labels names the classes of a YOLO-format set or VOC tree; a COCO file and a data.yaml name "
                     "their own")
    val = _data_source(args, parser, val=True)
    if val is not None and args.val_fraction is not None:
        parser.error("--val-fraction holds out part of the training set: it is for runs without a validation set")
    if val is None and args.val_fraction is None:
        val = own_split(train, "val")  # a data.yaml's or VOC tree's own validation split
    if args.patience is not None and (args.ray is not None or (val is None and args.val_fraction == 0)):
        parser.error("--patience watches the validation AP of a run in this process: it needs validation and "
                     "cannot go with --ray")
    if args.from_scratch and args.trainable_layers is not None:
        parser.error("--trainable-layers is for starting from weights; --from-scratch trains every layer")
    options.refuse_without_ray(args, parser, {"--ray-workers": args.ray_workers,
                                              "--cpus-per-worker": args.cpus_per_worker})
    start = "scratch" if args.from_scratch else "weights" if args.weights else "coco"
    return TrainSettings(
        model=args.model, start=start, weights=os.path.abspath(args.weights) if args.weights else None,
        trainable_layers=5 if args.from_scratch else (args.trainable_layers if args.trainable_layers is not None
                                                      else DEFAULT_TRAINABLE_LAYERS),
        train=train, val=val,
        val_fraction=0.0 if val is not None else (DEFAULT_VAL_FRACTION if args.val_fraction is None
                                                  else args.val_fraction),
        epochs=args.epochs, batch=args.batch, imgsz=args.imgsz,
        lr=args.lr if args.lr is not None else reference_lr(args.batch), schedule=args.schedule,
        box_batch=args.box_batch, seed=args.seed, device=args.device, amp=not args.no_amp, workers=args.workers,
        output=os.path.abspath(args.output or os.path.join("outputs", "train", args.model)),
        patience=args.patience or 0)


def check_resume_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """--resume continues a run with its own settings: only what changes where and how fast it runs may be given."""
    defaults = vars(parser.parse_args([]))
    given = [name for name, value in vars(args).items() if name not in RESUME_OPTIONS and value != defaults[name]]
    if given:
        option = "--loader-workers" if given[0] == "workers" else f"--{given[0].replace('_', '-')}"
        parser.error(f"--resume continues a run with its own settings; {option} cannot be given with it (only "
                     f"--loader-workers, --device, --ray and --cpus-per-worker)")
    if not Path(args.resume).is_dir():
        parser.error(f"--resume {args.resume}: no such folder")


def open_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[RunFolder, TrainSettings, bool]:
    """The run's folder and settings, and whether it continues a saved run; FrcnnError where the folder holds
    another run."""
    if args.resume:
        folder = RunFolder(args.resume)
        saved = folder.read_settings()
        defaults = vars(parser.parse_args([]))
        changes = {name: getattr(args, name) for name in ("workers", "device") if getattr(args, name) != defaults[name]}
        settings = TrainSettings.from_json({**saved.to_json(), **changes, "output": str(folder.path.resolve())})
        if args.ray is None and settings.replicas > 1:
            raise FrcnnError(f"{folder.path} holds a run of {settings.replicas} Ray training workers: resume it "
                              f"with --ray")
        return folder, settings, folder.has_run()
    settings = settings_from(args, parser)
    folder = RunFolder(settings.output)
    if not folder.has_run():
        return folder, settings, False
    saved = folder.read_settings()
    if args.ray is not None and args.ray_workers is None:  # the count, and the default rate, follow the cluster
        settings = dataclasses.replace(settings, replicas=saved.replicas,
                                       lr=saved.lr if args.lr is None else settings.lr)
    differ = settings.differences(saved)
    if differ:
        raise FrcnnError(f"{folder.path} holds another training run (its {differ[0]} setting differs: "
                          f"{_shown(getattr(saved, differ[0]))} there, {_shown(getattr(settings, differ[0]))} now): "
                          f"continue it with --resume {folder.path}, or give another --output")
    if args.ray is None and settings.replicas > 1:
        raise FrcnnError(f"{folder.path} holds a run of {settings.replicas} Ray training workers: continue it "
                          f"with --ray")
    return folder, (dataclasses.replace(settings, replicas=args.ray_workers)
                    if args.ray is not None and args.ray_workers else settings), True


def _shown(value: object) -> str:
    return value.describe() if isinstance(value, DataSource) else repr(value)


def read_data(settings: TrainSettings) -> TrainingData:
    data = load_training_data(settings)
    for line in data.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(data.summary(), file=sys.stderr)
    return data


def epoch_line(row: dict, epochs: int) -> str:
    """A finished epoch on one line: losses, validation AP, time and speed."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}",
             "(" + " ".join(f"{name.split('_', 1)[1]} {row[name]:.3f}" for name in
                            ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")) + ")"]
    if "AP" in row:
        parts += [f"AP {percent(row['AP'])}", f"AP50 {percent(row['AP50'])}"]
    speed = f"{row['images_per_s']:.2f} img/s" if row.get("images_per_s") else "- img/s"
    parts += [f"time {row['train_s'] + row['val_s']:.1f} s", speed]
    return "  ".join(parts)


def already_finished(folder: RunFolder, settings: TrainSettings, explicit_resume: bool) -> int:
    """A run that has done all its epochs: nothing to do for --resume; a new run there is refused."""
    where = f"{folder.path} already holds this run, finished ({settings.epochs} epochs)"
    if not explicit_resume:
        raise FrcnnError(f"{where}; give another --output to train again")
    print(f"{where}: nothing to do", file=sys.stderr)
    return 0


def run_training(folder: RunFolder, settings: TrainSettings, data: TrainingData, resuming: bool,
                 explicit_resume: bool) -> int:
    """Build (or restore) the run and train it to the end or to a Ctrl-C."""
    from frcnn.model import resolve_device
    from frcnn.training.board import open_board
    from frcnn.training.loop import Hooks, fit, patience_ran_out  # PyTorch: from here on
    from frcnn.training.setup import make_session
    from frcnn.training.state import read_state

    device = resolve_device(settings.device)
    record = read_state(folder / STATE) if resuming else None
    if record is not None and record["epoch"] >= settings.epochs:
        return already_finished(folder, settings, explicit_resume)
    du.prepare_output_dir(folder.path)
    if record is not None:
        which = "" if explicit_resume else f" of the unfinished run with these settings in {folder.path}"
        print(f"resuming at epoch {record['epoch'] + 1}, step {record['step']}{which}", file=sys.stderr)
    with du.StopOnSignal("the step under way, which is saved", graceful=True) as stop:
        hooks = Hooks(should_stop=stop, on_epoch=lambda row: tqdm.write(epoch_line(row, settings.epochs),
                                                                        file=sys.stdout))
        session = make_session(settings, data, folder, device, record, hooks)
        del record
        folder.begin(settings, data.train.class_names)  # once the start is known good: a failed start claims nothing
        print(f"training {settings.model} on {device} ({session.batches.steps_per_epoch} steps per epoch)",
              file=sys.stderr)
        board, line = open_board(folder.path, session.batches.steps_per_epoch)
        print(line, file=sys.stderr)
        if board is not None:
            show = hooks.on_epoch

            def show_and_record(row: dict) -> None:
                show(row)
                board.epoch(row)

            hooks.on_step, hooks.on_epoch = board.step, show_and_record
        try:
            finished = fit(session.trainer, session.batches, session.validator, settings, folder, session.progress,
                           session.log, hooks)
        finally:
            if board is not None:
                board.close()
    progress = session.progress
    if not finished:
        print(f"interrupted at epoch {progress.epoch + 1}, step {progress.step}: saved; resume with: "
              f"{du.command_name('train')} --resume {folder.path}", file=sys.stderr)
        return stop.exit_code
    if patience_ran_out(progress, settings):
        print(f"stopped early: validation AP has not improved for {progress.epoch - progress.best_epoch} epoch(s) "
              f"since epoch {progress.best_epoch} (--patience {settings.patience})", file=sys.stderr)
    return report_end(folder, progress.best_ap, progress.best_epoch)


def run_on_ray(args: argparse.Namespace, folder: RunFolder, settings: TrainSettings, data: TrainingData,
               resuming: bool) -> int:
    """The same run as data-parallel processes on a Ray cluster; this process writes its files."""
    from frcnn.core.specs import RayOptions
    from frcnn.training.board import open_board
    from frcnn.training.on_ray import train_on_ray

    du.prepare_output_dir(folder.path)

    def begin(known: TrainSettings) -> TrainSettings:
        if not resuming and args.lr is None:
            known = dataclasses.replace(known, lr=reference_lr(known.batch * known.replicas))
        folder.begin(known, data.train.class_names)  # the workers counted: what a resume needs
        return known

    ray = RayOptions(address=args.ray or None, workers=args.ray_workers, cpus_per_worker=args.cpus_per_worker)
    board, line = open_board(folder.path, steps_per_epoch=0)  # each epoch's row (the steps are the workers')
    print(line, file=sys.stderr)

    def on_epoch(row: dict) -> None:
        tqdm.write(epoch_line(row, settings.epochs), file=sys.stdout)
        if board is not None:
            board.epoch(row)

    with du.StopOnSignal("the step under way, which is saved", graceful=True) as stop:
        try:
            finished, settings, (best_ap, best_epoch) = train_on_ray(settings, data, folder, ray, resuming, stop,
                                                                     on_epoch, begin)
        finally:
            if board is not None:
                board.close()
    if not finished:
        resume = f"{du.command_name('train')} --resume {folder.path} --ray {args.ray}".rstrip()
        print(f"interrupted: saved; resume with: {resume}", file=sys.stderr)
        return stop.exit_code
    return report_end(folder, best_ap, best_epoch)


def report_end(folder: RunFolder, best_ap: float | None, best_epoch: int) -> int:
    best = f"best AP {percent(best_ap)} at epoch {best_epoch}" if best_ap is not None \
        else f"no validation AP; best.pth is epoch {best_epoch}'s"
    print(f"done: {best}: {folder / BEST} (labels {folder / LABELS})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume:
        check_resume_options(args, parser)
    else:
        settings_from(args, parser)  # usage errors now, before anything is read
    output = args.resume or args.output or os.path.join("outputs", "train", args.model)

    def body() -> int:
        folder, settings, resuming = open_run(args, parser)
        if resuming and folder.saved_epochs() >= settings.epochs:
            return already_finished(folder, settings, explicit_resume=bool(args.resume))
        data = read_data(settings)
        if args.ray is not None:
            return run_on_ray(args, folder, settings, data, resuming)
        return run_training(folder, settings, data, resuming, explicit_resume=bool(args.resume))

    return du.run_main(body, f"interrupted: the run keeps what it saved last (every finished epoch); resume with: "
                             f"{du.command_name('train')} --resume {output}")


if __name__ == "__main__":
    sys.exit(main())
