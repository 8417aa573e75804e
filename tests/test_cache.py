"""The export cache's size limit (least recently used entries go once a new one is written), its use marks, and the
--resume records: pruned when their outputs are gone, removed alone on request. Cache folders are filled with fake
entries of known sizes and use times; sizes are sparse files, so a 400 MB entry costs no disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from frcnn.cli import export_cache
from frcnn.pipelines.resume import ResumeBook, all_seals, seals_folder
from frcnn.runtimes import export
from frcnn.runtimes.cache import MAX_GB_VARIABLE, USED, entries, keep_under_limit, mark_used

MB = 1_000_000
DAY = 86_400.0
NOW = 1_700_000_000.0


def fake_entry(folder: Path, stem: str, megabytes: float, used_at: float, suffix: str = ".onnx") -> Path:
    """An entry of `megabytes` (its graph, a sparse file, and its small record), last used at `used_at`."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{stem}{suffix}"
    with open(model, "wb") as handle:
        handle.truncate(int(megabytes * MB))
    record = folder / f"{stem}.json"
    record.write_text("{}")
    for path in (model, record):
        os.utime(path, (used_at, used_at))
    return model


# What the cache says is read from stderr, as the scripts show it.
pytestmark = pytest.mark.usefixtures("messages_on_stderr")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FRCNN_CACHE", str(folder))
    monkeypatch.delenv(MAX_GB_VARIABLE, raising=False)
    return folder


def stems(folder: Path) -> set[str]:
    return {onnx.stem for onnx, _ in entries(folder)}


def test_the_least_recently_used_entries_go_until_the_default_2_gb_is_kept(cache, capsys):
    old = [fake_entry(cache, f"v2-{size}-old{day}", 167, NOW - day * DAY) for day, size in enumerate(range(10, 20))]
    new = fake_entry(cache, "v2-1024-new", 400, NOW)  # 10 x 167 + 400 = 2070 MB: one old entry is too many
    removed = keep_under_limit(cache, keep=[new])
    assert [onnx.stem for onnx, _ in removed] == ["v2-19-old9"]  # the one used longest ago
    assert stems(cache) == {p.stem for p in old[:9]} | {"v2-1024-new"}
    (line,) = capsys.readouterr().err.splitlines()
    assert line == ("export cache: removed 1 least recently used entry (v2-19-old9), 167.0 MB, "
                    f"to stay under 2 GB ({MAX_GB_VARIABLE})")
    assert keep_under_limit(cache, keep=[new]) == [] and capsys.readouterr().err == ""  # under the limit: nothing


def test_a_load_marks_an_entry_used_so_it_outlives_newer_ones(cache, capsys, monkeypatch):
    monkeypatch.setenv(MAX_GB_VARIABLE, "1")
    first = fake_entry(cache, "v1-800-aaaa", 300, NOW - 3 * DAY)
    fake_entry(cache, "v2-800-bbbb", 300, NOW - 2 * DAY)
    fake_entry(cache, "v2-640-cccc", 300, NOW - 1 * DAY)
    mark_used(first)  # loaded now: the most recently used
    assert (cache / f"v1-800-aaaa{USED}").is_file() and first.stat().st_mtime == NOW - 3 * DAY  # the graph untouched
    new = fake_entry(cache, "v2-512-dddd", 300, NOW)
    keep_under_limit(cache, keep=[new])
    assert stems(cache) == {"v1-800-aaaa", "v2-640-cccc", "v2-512-dddd"}
    assert "(v2-800-bbbb), 300.0 MB, to stay under 1 GB" in capsys.readouterr().err


def test_the_entry_in_use_stays_even_when_it_is_the_oldest_and_alone_over_the_limit(cache, capsys, monkeypatch):
    monkeypatch.setenv(MAX_GB_VARIABLE, "0.5")
    in_use = fake_entry(cache, "v2-1333-huge", 700, NOW - 9 * DAY)
    export_entry = fake_entry(cache, "v2-800-eeee", 100, NOW - 8 * DAY)
    int8 = fake_entry(cache, "v2-800-eeee-int8-ffff", 30, NOW - 7 * DAY, suffix=".xml")
    fake_entry(cache, "v1-800-gggg", 100, NOW - DAY)
    removed = keep_under_limit(cache, keep=[in_use])
    assert {onnx.stem for onnx, _ in removed} == {"v2-800-eeee", "v2-800-eeee-int8-ffff", "v1-800-gggg"}
    assert stems(cache) == {"v2-1333-huge"}
    assert "removed 3 least recently used entries (v2-800-eeee, v2-800-eeee-int8-ffff, v1-800-gggg), 230.0 MB" in \
        capsys.readouterr().err
    # An int8 model in use keeps the export it came from too.
    fake_entry(cache, "v2-800-eeee", 100, NOW - 8 * DAY)
    fake_entry(cache, "v2-800-eeee-int8-ffff", 30, NOW, suffix=".xml")
    keep_under_limit(cache, keep=[int8, export_entry])
    assert stems(cache) == {"v2-800-eeee", "v2-800-eeee-int8-ffff"}


def test_an_export_under_way_is_neither_counted_nor_removed(cache, monkeypatch):
    monkeypatch.setenv(MAX_GB_VARIABLE, "0.2")
    part = cache / ".v2-800-hhhh.onnx.4242.part"
    fake_entry(cache, "v1-800-iiii", 150, NOW - DAY)
    with open(part, "wb") as handle:
        handle.truncate(500 * MB)  # another process's export, half written
    new = fake_entry(cache, "v1-640-jjjj", 40, NOW)
    assert keep_under_limit(cache, keep=[new]) == []  # 190 MB of finished entries: under 200 MB
    assert part.exists()


def test_the_limit_can_be_lifted_and_a_bad_value_is_said(cache, capsys, monkeypatch):
    for stem, age in (("v1-800-kkkk", 2), ("v2-800-llll", 1)):
        fake_entry(cache, stem, 1500, NOW - age * DAY)
    monkeypatch.setenv(MAX_GB_VARIABLE, "0")  # no limit
    assert keep_under_limit(cache, keep=[]) == [] and len(stems(cache)) == 2
    monkeypatch.setenv(MAX_GB_VARIABLE, "two")
    removed = keep_under_limit(cache, keep=[])
    warning, line = capsys.readouterr().err.splitlines()
    assert warning == (f"warning: {MAX_GB_VARIABLE}=two is not a number of gigabytes (0 for no limit); "
                       f"keeping the export cache under 2 GB")
    assert [onnx.stem for onnx, _ in removed] == ["v1-800-kkkk"] and "(v1-800-kkkk), 1500.0 MB" in line


def test_a_new_export_is_marked_and_evicts_the_oldest_and_a_cached_one_is_marked(cache, tmp_path, monkeypatch,
                                                                               capsys):
    """The path through `cached_export`, with the ONNX export itself replaced by a 60 MB file."""
    monkeypatch.setattr(export, "_export_onnx", lambda module, imgsz, path: open(path, "wb").truncate(60 * MB))
    monkeypatch.setenv(MAX_GB_VARIABLE, "0.1")
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"some weights")
    first = export.cached_export(lambda: None, "v1", 64, 100, weights, "onnxruntime")
    marker = cache / f"{first.stem}{USED}"
    os.utime(marker, (NOW, NOW))
    assert export.cached_export(lambda: None, "v1", 64, 100, weights, "onnxruntime") == first  # from the cache
    assert marker.stat().st_mtime > NOW  # marked used again
    capsys.readouterr()
    second = export.cached_export(lambda: None, "v1", 96, 100, weights, "onnxruntime")
    assert not first.exists() and not marker.exists() and second.exists()
    assert f"removed 1 least recently used entry ({first.stem}), 60.0 MB" in capsys.readouterr().err


# ---------------------------------------------------------------- the records --resume reads


def sealed_run(out_dir: Path, names: list[str]) -> ResumeBook:
    """A run into `out_dir` that wrote and sealed one output per name."""
    book = ResumeBook(out_dir, {"model": "v1"})
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        output = out_dir / f"{name}_v1.jpg"
        output.write_bytes(b"a picture")
        book.seal(output, str(out_dir / f"{name}.jpg"), [output])
    return book


def test_records_of_outputs_since_removed_go_when_a_run_starts(cache, tmp_path):
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    sealed_run(kept, ["a", "b"])
    sealed_run(gone, ["c"])
    assert {json.loads(path.read_text())["out_dir"] for path in all_seals()} == {str(kept), str(gone)}
    (kept / "b_v1.jpg").unlink()  # one output removed by hand
    for path in gone.iterdir():
        path.unlink()
    gone.rmdir()  # a whole output folder removed
    ResumeBook(tmp_path / "another", {"model": "v2"})
    assert [path.name for path in all_seals()] == ["a_v1.jpg.json"]
    assert not seals_folder(gone).exists() and seals_folder(kept).is_dir()


def test_the_resume_records_can_be_cleared_alone(cache, tmp_path, capsys):
    sealed_run(tmp_path / "out", ["a", "b", "c"])
    model = fake_entry(cache, "v1-800-mmmm", 1, NOW)
    assert export_cache.main([]) == 0
    listing = capsys.readouterr()
    assert f"(at most 2 GB, {MAX_GB_VARIABLE}); 3 --resume record(s)" in listing.err
    assert export_cache.main(["--clear-resume"]) == 0
    assert capsys.readouterr().out == f"removed 3 --resume record(s) from {cache / 'resume'}\n"
    assert all_seals() == [] and model.exists()
    with pytest.raises(SystemExit) as usage:
        export_cache.main(["--clear", "--clear-resume"])
    assert usage.value.code == 2
