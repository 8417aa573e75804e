"""evaluate.py --plots / --report: known answers by construction (the error analysis, the confusion matrix, the PR
curve), the files written, report.html in a real browser, and one-line errors. Results are written by hand: no model."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import pytest
from helpers import assert_one_line_error, run_script, scene

from frcnn.evaluation.coco import load_set, score
from frcnn.reporting.ap_tables import pr_curve, summary
from frcnn.reporting.confusion import confusion_counts, normalise_rows
from frcnn.reporting.errors_analysis import analyse_errors
from frcnn.reporting.gallery import pick
from frcnn.reporting.matching import match_images
from frcnn.reporting.runs import set_record, write_set_record
from frcnn.reporting.scoring import evaluate, ground_truth
from frcnn.synthetic.world import write_split

CATEGORIES = [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog", "supercategory": "animal"},
              {"id": 3, "name": "car", "supercategory": "vehicle"}]
LEFT, RIGHT = [10, 10, 100, 100], [150, 10, 100, 100]
STEPS = ["C75", "C50", "Loc", "Sim", "Oth", "BG", "FN"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dataset(objects: dict[int, list[tuple[int, list[int]]]]) -> dict:
    """A COCO set of 320×240 pictures from {image id: [(category id, [x, y, w, h]), ...]}."""
    images = [{"id": i, "file_name": f"{i:03d}.jpg", "width": 320, "height": 240} for i in sorted(objects)]
    listed = [(i, c, b) for i in sorted(objects) for c, b in objects[i]]
    annotations = [{"id": n, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                   for n, (i, c, b) in enumerate(listed, start=1)]
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def write_set(folder: Path, data: dict) -> tuple[Path, Path]:
    """The set on disk, pictures included: its images folder and annotation file."""
    (folder / "images").mkdir(parents=True)
    for image in data["images"]:
        cv2.imwrite(str(folder / "images" / image["file_name"]), scene(240, 320, seed=image["id"]))
    (folder / "labels.json").write_text(json.dumps(data))
    return folder / "images", folder / "labels.json"


def detection(image_id: int, category_id: int, box: list[float], score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": list(box), "score": score}


def localisation_case() -> tuple[dict, list[dict]]:
    """Four pictures of two cats each, all found exactly (0.9) except two boxes shifted 60 px (IoU 0.25; 0.6)."""
    data = dataset({i: [(1, LEFT), (1, [150, 100, 100, 100])] for i in range(1, 5)})
    found = [detection(a["image_id"], 1, a["bbox"], 0.9) for a in data["annotations"]]
    for k in (0, 5):
        x, y, w, h = found[k]["bbox"]
        found[k] = detection(found[k]["image_id"], 1, [x + 60, y, w, h], 0.6)
    return data, found


def confusion_case() -> tuple[dict, list[dict]]:
    """Picture 1: a cat and a dog, both found. Picture 2: a cat taken for a dog (same supercategory). Picture 3: a car
    found and a cat taken for a car (another supercategory). The wrong detections score highest."""
    data = dataset({1: [(1, LEFT), (2, RIGHT)], 2: [(1, LEFT)], 3: [(3, RIGHT), (1, LEFT)]})
    found = [detection(1, 1, LEFT, 0.9), detection(1, 2, RIGHT, 0.9), detection(2, 2, LEFT, 0.95),
             detection(3, 3, RIGHT, 0.9), detection(3, 3, LEFT, 0.95)]
    return data, found


def analysed(data: dict, found: list[dict]):
    truth = ground_truth(data)
    ids = [image["id"] for image in data["images"]]
    scored = evaluate(truth, found, ids)
    return truth, scored, analyse_errors(truth, found, ids, scored)


# ---------------------------------------------------------------- known answers, on the modules


def test_localisation_errors_are_the_whole_gap():
    _, _, errors = analysed(*localisation_case())
    aps = errors.ap("all")
    # 6 of 8 cats found at IoU 0.5 and 0.75, all before any miss: precision 1 up to recall 0.75 (76 of 101 points).
    assert aps["C75"] == pytest.approx(76 / 101) and aps["C50"] == pytest.approx(76 / 101)
    for step in ("Loc", "Sim", "Oth", "BG", "FN"):
        assert aps[step] == pytest.approx(1.0), step
    assert set(errors.ap("small").values()) == {None} and errors.curves("small") is None  # no small objects


def test_a_similar_class_shows_in_sim_and_another_in_oth_and_in_the_confusion_matrix():
    data, found = confusion_case()
    truth, _, errors = analysed(data, found)
    cat, dog, car = (errors.class_ap("all", c) for c in (1, 2, 3))
    # dog: its false detection (on a cat, same supercategory) comes first: AP 0.5 until Sim forgives it.
    assert dog["Loc"] == pytest.approx(0.5) and dog["Sim"] == pytest.approx(1.0)
    # car: its false detection lies on a cat, another supercategory: only Oth forgives it.
    assert car["Sim"] == pytest.approx(0.5) and car["Oth"] == pytest.approx(1.0)
    # cat: one of three found (34 of 101 recall points), the two others missed: only FN closes the gap.
    assert cat["Oth"] == pytest.approx(34 / 101) and cat["BG"] == pytest.approx(34 / 101) and cat["FN"] == 1.0
    overall = errors.ap("all")
    assert overall["Sim"] - overall["Loc"] == pytest.approx(0.5 / 3)
    assert overall["Oth"] - overall["Sim"] == pytest.approx(0.5 / 3)

    counts = confusion_counts(match_images(truth, found, [1, 2, 3]), [1, 2, 3])
    assert counts.tolist() == [[1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]  # last: background
    assert normalise_rows(counts)[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])


def test_a_perfect_run_has_precision_one_up_to_recall_one():
    data, _ = confusion_case()
    found = [detection(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in data["annotations"]]
    truth, scored, errors = analysed(data, found)
    for iou in (0.5, 0.75):
        assert pr_curve(scored, iou) == pytest.approx(np.ones(101))
    assert summary(scored)["AP"] == pytest.approx(1.0)
    assert list(errors.ap("all").values()) == pytest.approx([1.0] * 7)
    matrix = normalise_rows(confusion_counts(match_images(truth, found, [1, 2, 3]), [1, 2, 3]))
    assert matrix == pytest.approx(np.diag([1.0, 1.0, 1.0, 0.0]))


def noisy(data: dict, seed: int, shift: float, drop: float) -> list[dict]:
    """Detections near the objects, some dropped, some moved, some of the wrong class, plus clutter."""
    rng = np.random.default_rng(seed)
    found = []
    for annotation in data["annotations"]:
        x, y, w, h = annotation["bbox"]
        if rng.random() >= drop:
            dx, dy = shift * max(w, h) * rng.uniform(-1, 1, 2)
            category = annotation["category_id"] if rng.random() > drop else int(rng.integers(1, 6))
            found.append(detection(annotation["image_id"], category, [x + dx, y + dy, w, h], float(rng.uniform(.3, 1))))
    for image in data["images"]:
        box = [float(v) for v in rng.uniform(0, 250, 2)] + [30.0, 30.0]
        found.append(detection(image["id"], int(rng.integers(1, 6)), box, float(rng.uniform(0, 0.9))))
    return found


def test_the_plots_score_as_evaluate_does(tmp_path):
    annotations = write_split(tmp_path / "set", seed=5, pictures=6)
    data = json.loads(annotations.read_text())
    found = noisy(data, seed=1, shift=0.15, drop=0.2)
    ids = [image["id"] for image in data["images"]]
    ours = summary(evaluate(ground_truth(data), found, ids))
    theirs = score(load_set(None, annotations).coco, [dict(d) for d in found], ids)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name


def test_the_gallery_picks_the_pictures_that_change_most():
    before = {1: 0.5, 2: 1.0, 3: 0.2, 4: 0.9}
    after = {1: 0.5, 2: 0.4, 3: 0.9, 4: 1.0}
    assert pick([before, after], 2) == [3, 2]  # +0.7, then -0.6; picture 1 does not change and is never shown
    assert pick([before, after], 8) == [3, 2, 4]
    assert pick([before], 2) == [3, 1]  # one run: where it does worst, perfect pictures left out


def test_the_error_analysis_legends_give_ap_in_percent_as_the_tables_do(monkeypatch, tmp_path):
    from frcnn.reporting import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure) or path)
    _, _, errors = analysed(*localisation_case())
    plots.error_areas(tmp_path / "errors.png", errors, "run")
    legend = figures[0].axes[0].get_legend()
    assert legend.get_title().get_text() == "AP, %"
    texts = [text.get_text() for text in legend.get_texts()]
    assert texts == [f"[{100 * 76 / 101:.1f}] C75", f"[{100 * 76 / 101:.1f}] C50",
                     *(f"[100.0] {step}" for step in ("Loc", "Sim", "Oth", "BG", "FN"))]


def test_gallery_captions_wrap_to_fit_a_narrow_picture():
    from frcnn.drawing import DrawStyle
    from frcnn.reporting.gallery import draw
    from frcnn.reporting.matching import ImageMatch

    width, height = 90, 300
    picture = np.full((height, width, 3), 90, np.uint8)
    box = np.array([[10, 10, 40, 60]], float)
    match = ImageMatch(box, np.array([1]), box, np.array([0.9]), np.array([2]), [(0, 0)])
    drawn = draw(picture, "a_rather_long_file_name_0001.jpg", [match, match], ["before", "after"],
                 ["N/A", "cat", "dog"])
    assert drawn.shape[1] == 3 * width
    bar = drawn[: drawn.shape[0] - height].max(axis=2)  # the title bars above the three panels
    pad = DrawStyle.for_picture(height, width).pad
    for panel in range(3):
        text = np.nonzero((bar[:, panel * width:(panel + 1) * width] > 100).any(axis=0))[0]
        assert len(text) and text.max() < width - pad, panel  # every caption ends inside its own panel
    assert bar.shape[0] > 6 * 12  # wrapped over several rows rather than cut


# ---------------------------------------------------------------- through evaluate.py


def evaluate_script(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_script("evaluate.py", *args, cwd=cwd, timeout=120)


def score_file(cwd: Path, annotations: Path, images: Path | None, found: list[dict], output: str,
               *args: str) -> subprocess.CompletedProcess:
    predictions = cwd / f"{output}.json"
    predictions.write_text(json.dumps(found))
    where = ["--images", str(images)] if images else []
    result = evaluate_script(cwd, "--annotations", str(annotations), *where, "--predictions", str(predictions),
                             "--output", output, *args)
    assert result.returncode == 0, result.stderr
    return result


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_known_answers_through_the_command_line(tmp_path):
    data, found = localisation_case()
    images, annotations = write_set(tmp_path / "set", data)
    score_file(tmp_path, annotations, images, found, "loc", "--plots")
    (row,) = [r for r in read_csv(tmp_path / "loc" / "error_analysis.csv") if r["objects"] == "all"]
    assert [row[s] for s in STEPS] == ["75.25", "75.25", "100.00", "100.00", "100.00", "100.00", "100.00"]

    data, found = confusion_case()
    images, annotations = write_set(tmp_path / "set2", data)
    score_file(tmp_path, annotations, images, found, "confused", "--plots", "--gallery", "2")
    rows = {r["class"]: r for r in read_csv(tmp_path / "confused" / "ap_per_class.csv")}
    assert rows["dog"]["AP predictions"] == "50.00" and rows["cat"]["objects"] == "3"
    assert [p.name for p in sorted((tmp_path / "confused" / "gallery").iterdir())] == ["01_002.jpg", "02_003.jpg"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """Two runs on a synthetic set scored into two folders (a weaker and a stronger), then compared with --report."""
    root = tmp_path_factory.mktemp("compared")
    annotations = write_split(root / "set", seed=7, pictures=6)
    data = json.loads(annotations.read_text())
    score_file(root, annotations, root / "set" / "images", noisy(data, 3, shift=0.3, drop=0.3), "fp32")
    score_file(root, annotations, None, noisy(data, 4, shift=0.05, drop=0.05), "int8")
    result = evaluate_script(root, "--compare", "fp32", "int8", "--report", "--gallery", "3", "--output", "cmp")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "int8 - fp32" in result.stdout
    return root / "cmp"


def test_compare_writes_every_plot_as_a_real_picture(compared):
    pictures = ["pr_curves.png", "ap_per_class.png", "ap_by_size.png", "errors_fp32.png", "errors_int8.png",
                "confusion_fp32.png", "confusion_int8.png"]
    for name in pictures:
        image = cv2.imread(str(compared / name))
        assert image is not None and min(image.shape[:2]) >= 200, name
        assert image.std() > 10, name  # not a blank canvas
    gallery = sorted((compared / "gallery").glob("*.jpg"))
    assert 1 <= len(gallery) <= 3 and all(cv2.imread(str(p)).shape[1] >= 3 * 320 for p in gallery)
    rows = read_csv(compared / "ap_per_class.csv")
    assert [r["class"] for r in rows] and sorted(r["class"] for r in rows) == ["disc", "ring", "square", "star",
                                                                                "triangle"]
    assert list(rows[0]) == ["class", "supercategory", "objects", "AP fp32", "AP int8", "int8 - fp32"]
    differences = [float(r["int8 - fp32"]) for r in rows]
    assert differences == sorted(differences, reverse=True)
    errors = read_csv(compared / "error_analysis.csv")
    assert [(r["run"], r["objects"]) for r in errors] == [("fp32", "all"), ("fp32", "small"), ("int8", "all"),
                                                          ("int8", "small")]
    for row in errors:  # each step forgives more: the curves never go down
        values = [float(row[s]) for s in STEPS]
        assert values == sorted(values) and values[-1] == 100.0
    assert not list(compared.rglob("*.part*"))


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium here (apt-get install chromium)")
def test_the_report_opens_in_headless_chromium_with_every_picture(compared, tmp_path):
    page = (compared / "report.html").read_text(encoding="utf-8")
    sources = [unquote(s) for s in re.findall(r'<img src="([^"]+)"', page)]
    assert len(sources) >= 10 and all((compared / s).is_file() for s in sources)
    assert "http" not in page and "<script" not in page  # nothing fetched, nothing run
    folder = tmp_path / "copy"
    shutil.copytree(compared, folder)
    probe = ("<script>window.addEventListener('load', () => { const all = [...document.images]; "
             "document.title = `loaded ${all.filter(i => i.complete && i.naturalWidth > 0).length} of "
             "${all.length}`; });</script></body>")
    (folder / "probe.html").write_text(page.replace("</body>", probe), encoding="utf-8")
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync", "--no-first-run",
                             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                             (folder / "probe.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"<title>loaded {len(sources)} of {len(sources)}</title>" in result.stdout, result.stdout[:500]


def write_model_run(folder: Path, model: str, found: list[dict], images: int, missing: set[int]) -> None:
    """A results folder as a model run leaves it: results, progress (missing pictures without a time), metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model}_results.json").write_text("[\n" + ",\n".join(json.dumps(d) for d in found) + "\n]\n")
    progress = [{"image_id": i, "detections": 1, "ms": None if i in missing else 50.0} for i in range(1, images + 1)]
    (folder / f"{model}_progress.jsonl").write_text("".join(json.dumps(p) + "\n" for p in progress))
    metrics = {"AP": 0.5, "AP50": 0.5, "AP75": 0.5, "AP_small": None, "AP_medium": 0.5, "AP_large": 0.5,
               "AR100": 0.5, "images": images - len(missing), "images_missing": len(missing), "ms_per_image": 50.0}
    (folder / f"{model}_metrics.json").write_text(json.dumps(metrics))
    (folder / f"{model}_settings.json").write_text(json.dumps({"weights": f"{model}.pth"}))


def test_plots_of_a_finished_both_models_folder_without_running_a_model(tmp_path):
    data, found = confusion_case()
    images, annotations = write_set(tmp_path / "set", data)
    write_model_run(tmp_path / "eval", "v1", found, 3, missing={3})
    perfect = [detection(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in data["annotations"]]
    write_model_run(tmp_path / "eval", "v2", perfect, 3, missing=set())
    write_set_record(tmp_path / "eval", set_record(annotations, images))
    result = evaluate_script(tmp_path, "--report", "--output", "eval")
    assert result.returncode == 0, result.stderr
    assert "v2 - v1" in result.stdout  # the table of what the folder holds
    assert "the plots use the 2 they share" in result.stderr  # v1 could not read picture 3
    assert "has changed" not in result.stderr  # set.json as evaluate.py writes it
    assert "AP per class" in (tmp_path / "eval" / "report.html").read_text()
    assert (tmp_path / "eval" / "errors_v1.png").is_file() and (tmp_path / "eval" / "confusion_v2.png").is_file()
    picked = sorted(p.name for p in (tmp_path / "eval" / "gallery").iterdir())
    assert picked == ["01_002.jpg"]  # picture 1 is perfect in both; 3 was not scored by v1


def test_bad_inputs_are_one_line(tmp_path):
    data, found = confusion_case()
    images, annotations = write_set(tmp_path / "set", data)
    (tmp_path / "empty").mkdir()
    write_model_run(tmp_path / "both", "v1", found, 3, set())
    write_model_run(tmp_path / "both", "v2", found, 3, set())
    (tmp_path / "only-metrics").mkdir()
    (tmp_path / "only-metrics" / "v2_metrics.json").write_text(json.dumps({"AP": 0.4, "images": 3}))
    write_model_run(tmp_path / "unrecorded", "v1", found, 3, set())
    for name, sha in (("set-a", "a"), ("set-b", "b")):
        write_model_run(tmp_path / name, "v1", found, 3, set())
        (tmp_path / name / "set.json").write_text(json.dumps({"annotations": str(annotations), "sha256": sha}))
    write_model_run(tmp_path / "elsewhere", "v1", [detection(99, 1, LEFT, 0.9)], 3, set())
    cases = [
        (["--plots", "--output", "empty"], "no metrics here"),
        (["--plots", "--output", "nowhere"], "results folder not found"),
        (["--compare", "only-metrics", "--plots", "--annotations", str(annotations)], "no results of v2 to plot"),
        (["--compare", "set-a", "set-b", "--plots"], "made on different sets"),
        (["--compare", "unrecorded", "--plots"], "no record of the set"),
        (["--compare", "elsewhere", "--plots", "--annotations", str(annotations)], "not in the set"),
        (["--compare", "both", "set-a", "--plots"], "compares two, and both and set-a hold 3"),
    ]
    for args, message in cases:
        result = evaluate_script(tmp_path, *args)
        assert_one_line_error(result)
        assert message in result.stderr, (args, result.stderr)
    for args, message in ((["--gallery", "3", "--compare", "both"], "--gallery goes with --plots or --report"),
                          (["--plots", "--gallery", "-1"], "-1 must be 0 or more"),
                          (["--compare", "set-a", "set-b", "both", "--report"], "compare at most two folders")):
        result = evaluate_script(tmp_path, *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1].endswith(message), result.stderr
