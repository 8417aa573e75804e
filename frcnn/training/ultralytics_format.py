"""Reading a set an Ultralytics `data.yaml` describes (as Ultralytics, Roboflow and `detect_image.py --save-txt` write
them): its class names, and per split (train, val, test) folders of pictures, .txt lists of pictures, or lists of
either. Paths resolve as Ultralytics' `check_det_dataset` resolves them: against the `path` key (itself against the
yaml's folder when relative), else against the yaml's folder; a split that starts with `../` and is not found there
is looked for without that first `../` (Roboflow writes `../train/images` beside a yaml at the set's root). Each
picture's label file is its path with the last `images` folder replaced by `labels` and the suffix by `.txt`, in the
YOLO format `yolo_format` reads."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.files import IMAGE_SUFFIXES
from frcnn.training.sets import BACKGROUND, Findings, LabelledSet, check_usable
from frcnn.training.yolo_format import note_orphans, pictures_in, read_pictures

SPLITS = ("train", "val", "test")
YAML_NAMES = ("data.yaml", "data.yml")
# The keys Ultralytics' detection sets and Roboflow's exports use; any other is most likely a typo.
KNOWN_KEYS = ("path", "train", "val", "test", "names", "nc", "download", "validation", "minival", "roboflow",
              "channels", "kpt_shape", "flip_idx")


@dataclass(frozen=True)
class DataYaml:
    """What a data.yaml says: its class names (background first) and each split's folders or list files."""

    file: Path
    class_names: list[str]
    splits: dict[str, list[Path]]
    unknown: tuple[str, ...] = ()  # one line per key it does not know, with the closest known key


def yaml_file(path: Path) -> Path | None:
    """The data.yaml `path` names: the file itself, or the one in the folder; None where it names neither."""
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path
    if path.is_dir():
        return next((path / name for name in YAML_NAMES if (path / name).is_file()), None)
    return None


def read_data_yaml(file: Path) -> DataYaml:
    """A data.yaml's classes and splits; FrcnnError naming the file where it is not one."""
    import yaml

    try:
        record = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise FrcnnError(f"{file}: not a readable YAML file ({first_line(error)})") from error
    if not isinstance(record, dict):
        raise FrcnnError(f"{file}: not a data.yaml (expected keys such as train, val and names)")
    unknown = tuple(_unknown_key(key) for key in record if key not in KNOWN_KEYS)
    typos = f"; {unknown[0]}" if unknown else ""
    if "val" not in record and "validation" in record:  # an older spelling Ultralytics accepts too
        record["val"] = record["validation"]
    if not record.get("train"):
        raise FrcnnError(f"{file}: no train split (a data.yaml needs train: and names:){typos}")
    if record.get("names") is None:  # Ultralytics requires names too: made-up ones would end up in labels.txt
        raise FrcnnError(f"{file}: no class names (a data.yaml needs names:, a list or 0: name, 1: name, ...)"
                         f"{typos}")
    names = _class_names(record, file)
    root = _root(record, file)
    splits = {split: [_resolve(root, entry) for entry in _entries(record[split], file, split)]
              for split in SPLITS if record.get(split)}
    return DataYaml(file, [BACKGROUND, *names], splits, tuple(f"{file}: {line}" for line in unknown))


def _unknown_key(key: object) -> str:
    near = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1, cutoff=0.6)
    return f"unknown key '{key}'" + (f" (did you mean '{near[0]}'?)" if near else "") + ", ignored"


def _class_names(record: dict, file: Path) -> list[str]:
    """`names` as a list or as {0: name, 1: name, ...}, checked against `nc` where it is given."""
    names, count = record["names"], record.get("nc")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise FrcnnError(f"{file}: nc must be a whole number of classes, not {count!r}")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise FrcnnError(f"{file}: names must number the classes 0, 1, 2, ... (got {sorted(names)[:5]} ...)")
        names = [names[number] for number in range(len(names))]
    if not isinstance(names, list) or not names:
        raise FrcnnError(f"{file}: names must be a list of class names or a mapping 0: name, 1: name, ...")
    names = [str(name).strip() for name in names]
    if count is not None and count != len(names):
        raise FrcnnError(f"{file}: nc is {count} but names lists {len(names)} classes")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or not all(names):
        raise FrcnnError(f"{file}: class names must be distinct and not empty ({', '.join(repeated) or 'empty'})")
    return names


def _root(record: dict, file: Path) -> Path:
    folder = Path(os.path.abspath(file)).parent
    if not record.get("path"):
        return folder
    return folder / str(record["path"])  # an absolute path stays as it is


def _entries(value, file: Path, split: str) -> list[str]:
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(isinstance(entry, str) and entry for entry in entries):
        raise FrcnnError(f"{file}: {split} must be a folder, a .txt list of pictures, or a list of them")
    return entries


def _resolve(root: Path, entry: str) -> Path:
    path = Path(os.path.normpath(root / entry))
    if not path.exists() and entry.startswith("../"):
        path = Path(os.path.normpath(root / entry[3:]))
    return path


def label_file(picture: Path) -> Path:
    """The picture's label file: its path with the last `images` folder named `labels`, and the suffix .txt."""
    parts = list(picture.parts)
    folders = [index for index, part in enumerate(parts[:-1]) if part == "images"]
    if folders:
        parts[folders[-1]] = "labels"
    return Path(*parts).with_suffix(".txt")


def split_pictures(entries: Sequence[Path], origin: Path, split: str) -> tuple[list[Path], list[Path]]:
    """The pictures a split lists (folders searched through, list files read), and the label folders to search for
    label files without a picture (only those of whole folders: a list may share a folder with another split)."""
    pictures, label_folders = [], []
    for entry in entries:
        if entry.is_dir():
            pictures += pictures_in(entry)
            label_folders.append(label_file(entry / "picture").parent)
        elif entry.is_file() and entry.suffix.lower() == ".txt":
            pictures += _listed(entry)
        elif entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            pictures.append(entry)
        else:
            raise FrcnnError(f"{origin}: the {split} split {entry} does not exist")
    return list(dict.fromkeys(pictures)), label_folders


def _listed(listing: Path) -> list[Path]:
    """The pictures a .txt list names, one per line; relative ones (./x or x) against the list's folder."""
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise FrcnnError(f"{listing}: cannot read this list of pictures ({first_line(error)})") from error
    folder = Path(os.path.abspath(listing)).parent
    return [Path(os.path.normpath(folder / line.strip())) for line in lines if line.strip()]


def has_split(file: Path, split: str) -> bool:
    """Whether the data.yaml names this split (False also where it cannot be read: reading it says why)."""
    try:
        return split in read_data_yaml(file).splits
    except FrcnnError:
        return False


def read_ultralytics(file: str, split: str, role: str,
                     train_classes: Sequence[str] | None = None) -> tuple[LabelledSet, Findings]:
    """One split of a data.yaml's set, checked; `train_classes`: the training set's names, which a validation
    set's must equal."""
    described = read_data_yaml(Path(file))
    if split not in described.splits:
        raise FrcnnError(f"{file}: no {split} split (it names {', '.join(described.splits)})")
    class_names = described.class_names
    if train_classes is not None and list(train_classes) != class_names:
        raise FrcnnError(f"{file}: the validation set's classes ({', '.join(class_names[1:])}) differ from the "
                          f"training set's ({', '.join(train_classes[1:])})")
    pictures, label_folders = split_pictures(described.splits[split], described.file, split)
    if not pictures:
        raise FrcnnError(f"{file}: the {split} split has no pictures "
                          f"({', '.join(str(entry) for entry in described.splits[split])})")
    findings = Findings(role)
    if train_classes is None:  # said once: a validation split of the same file would say it again
        findings.notes += described.unknown
    expected = {picture: label_file(picture) for picture in pictures}
    samples = read_pictures(expected, class_names, role, findings)
    note_orphans(label_folders, set(expected.values()), findings)
    labelled = LabelledSet(role, class_names, list(range(len(class_names))), samples, oriented=True)
    check_usable(labelled, f"{file} ({split})", findings)
    return labelled, findings
