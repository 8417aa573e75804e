"""The documentation against the code: every option of the scripts is on some page under docs/, every Python example
of the pages runs and prints what it promises, and the README's links lead somewhere."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, offline_env

from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES
from frcnn.synthetic.checkpoints import BOOSTED_LABEL

DOCS = ROOT / "docs"
# A fenced Python block at the start of a line; the line before it may say why it is not run.
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
# The examples name the COCO weights as `ModelSpec(<name>, device="auto")`; the test puts a local checkpoint there.
COCO_SPEC = re.compile(r'ModelSpec\(([^,()]+), device="auto"\)')
DETECTION_LINE = re.compile(r"(.+) (0\.\d+|1\.0) (\[.*\])")
# "It prints" and a ```text block right after an example: what it must print, line for line.
PRINTS = re.compile(r"\A\s*It prints\s*\n\s*```text\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def python_blocks() -> list:
    """Every ```python block of the pages, as a test parameter named by its page and line; the marked ones skipped."""
    blocks = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for match in PYTHON_BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[:match.start()].rstrip("\n").rpartition("\n")[2]
            reason = NOT_RUN.search(before)
            marks = [pytest.mark.skip(reason=f"not run: {reason.group(1)}")] if reason else []
            printed = PRINTS.match(text[match.end():])
            blocks.append(pytest.param(match.group(1), printed.group(1) if printed else None,
                                       id=f"{page.relative_to(DOCS).as_posix()}:{line}", marks=marks))
    return blocks


def offline_code(example: str, checkpoints: dict[str, Path]) -> str:
    """The example with local test checkpoints in place of the COCO weights this machine cannot download."""
    unplaced = [call for call in re.findall(r"ModelSpec\([^()]*\)", example)
                if "weights=" not in call and not COCO_SPEC.fullmatch(call)]
    assert not unplaced, (f"write {unplaced} as ModelSpec(<name>, device=\"auto\") so that the test can run it "
                          "offline, or mark the block <!-- not run: reason -->")
    paths = {name: str(path) for name, path in checkpoints.items()}
    return (f"CHECKPOINTS = {paths!r}\n"
            + COCO_SPEC.sub(r'ModelSpec(\1, weights=CHECKPOINTS[\1], imgsz=96, backend="torch")', example))


def test_the_docs_have_python_examples():
    assert len(python_blocks()) >= 2
    assert any("SAMPLE_PHOTO" in block.values[0] for block in python_blocks())


@pytest.mark.parametrize("example, printed", python_blocks())
def test_every_python_example_of_the_docs_runs(example, printed, checkpoints, tmp_path):
    # From a folder of its own, not the project's: the example must not lean on files beside it (the sample photo is
    # package data), and whatever it writes stays there.
    env = offline_env(tmp_path, {"PYTHONPATH": str(ROOT)})
    result = subprocess.run([sys.executable, "-c", offline_code(example, checkpoints)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines, "the example prints nothing"
    if printed is not None:  # the page shows what it prints
        assert lines == printed.splitlines(), result.stdout
    for name in re.findall(r'cv2\.imwrite\("([^"]+)"', example):  # every picture it says it writes
        assert (tmp_path / name).stat().st_size > 0, name
    if "to_records(" in example:  # it prints one line per detection: name, score at or above the threshold, box
        threshold = float(re.search(r"threshold=([\d.]+)", example).group(1))
        assert any(line.startswith(COCO_INSTANCE_CATEGORY_NAMES[BOOSTED_LABEL] + " ") for line in lines)
        for line in lines:
            name, score, box = DETECTION_LINE.fullmatch(line).groups()
            assert float(score) >= threshold and len(json.loads(box)) == 4


@pytest.mark.parametrize("script", ["detect_image", "detect_video", "evaluate", "train", "serve"])
def test_every_option_of_the_scripts_is_in_the_docs(script):
    pages = "\n".join(page.read_text(encoding="utf-8") for page in doc_pages())
    parser = importlib.import_module(f"frcnn.cli.{script}").build_parser()
    options = [name for action in parser._actions for name in action.option_strings
               if name.startswith("--") and name != "--help"]
    missing = [name for name in options if not re.search(re.escape(name) + r"(?![\w-])", pages)]
    assert not missing, f"{script}.py options no page under docs/ mentions: {missing}"


def test_the_readme_links_lead_to_files_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [target.split("#", 1)[0] for target in re.findall(r"\]\(([^)\s]+)\)", readme)
               if "://" not in target and not target.startswith("#")]
    assert targets
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
