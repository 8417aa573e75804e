"""The layout's contract, read from the sources with `ast`: imports only go down the layers, and never in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

# Top to bottom. A module belongs to the layer of the longest prefix that names it.
SCRIPTS = ["detect_image", "detect_video", "evaluate", "train", "export_cache", "export"]
# The service is an entry point built over the scripts' own option code (it checks a video job as detect_video.py).
# The short files at the top of a clone that hand on to the package (never imported by it).
TOP_LEVEL = SCRIPTS + ["serve", "model", "detect_utils", "coco_names"]
LAYERS = [
    ("the clone's top-level files", TOP_LEVEL),
    ("the service's command", ["frcnn.cli.serve"]),
    ("the service", ["frcnn.serve"]),
    ("entry scripts", [f"frcnn.cli.{name}" for name in SCRIPTS]),
    ("what the scripts share", ["frcnn.cli"]),
    ("pipelines", ["frcnn.pipelines", "frcnn.video", "frcnn.training"]),
    ("inference", ["frcnn.inference", "frcnn.drawing", "frcnn.evaluation", "frcnn.analytics", "frcnn.reporting"]),
    ("models and runtimes", ["frcnn.model", "frcnn.runtimes", "frcnn.synthetic"]),
    ("value types", ["frcnn.core", "frcnn.samples", "frcnn"]),
]


def project_modules() -> dict[str, Path]:
    modules = {path.stem: path for path in ROOT.glob("*.py")}
    for path in (ROOT / "frcnn").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def layer_of(module: str) -> int:
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"{module} belongs to no layer: add it to LAYERS"
    return rank


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules a file imports, anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "frcnn":
                found.add(name)
    return found


def graph() -> tuple[dict[str, Path], dict[str, set[str]]]:
    modules = project_modules()
    return modules, {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_imports_never_go_up_a_layer():
    modules, edges = graph()
    upward = [f"{modules[a].relative_to(ROOT)} ({LAYERS[layer_of(a)][0]}) imports {modules[b].relative_to(ROOT)} "
              f"({LAYERS[layer_of(b)][0]})"
              for a, targets in edges.items() for b in targets if layer_of(b) < layer_of(a)]
    assert not upward, "\n".join(upward)


def test_the_package_never_imports_the_clones_top_level_files():
    """Installed, `frcnn` stands alone: a user's own model.py or coco_names.py beside their script is never read."""
    modules, edges = graph()
    offending = [f"{modules[a].relative_to(ROOT)} imports {b}" for a, targets in edges.items() if a.startswith("frcnn")
                 for b in targets if b in TOP_LEVEL]
    assert not offending, "\n".join(offending)


def test_the_clones_top_level_files_are_short_hand_ons():
    """Each top-level file only hands on to the package: every line of code is an import or the `main` call."""
    for name in TOP_LEVEL:
        tree = ast.parse((ROOT / f"{name}.py").read_text(encoding="utf-8"))
        body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        kinds = {type(node).__name__ for node in body}
        assert kinds <= {"Import", "ImportFrom", "If"}, f"{name}.py holds code: {kinds}"
        assert all(node.module.startswith("frcnn") for node in body if isinstance(node, ast.ImportFrom)), name


def test_imports_make_no_circle():
    modules, edges = graph()
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                return trail[trail.index(target):] + [target] if target in trail else [module, target]
            if target not in state:
                circle = visit(target, trail + [target])
                if circle:
                    return circle
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            circle = visit(module, [module])
            assert circle is None, " -> ".join(str(modules[m].relative_to(ROOT)) for m in circle)


def test_the_checker_sees_an_upward_import_and_a_circle(tmp_path):
    """The rules above can fail: a lower module importing a script, and two modules importing each other."""
    modules = {"frcnn.model": tmp_path / "model.py", "frcnn.cli.detect_image": tmp_path / "detect_image.py",
               "frcnn.inference.a": tmp_path / "a.py", "frcnn.inference.b": tmp_path / "b.py"}
    modules["frcnn.model"].write_text("import frcnn.cli.detect_image\n")
    modules["frcnn.cli.detect_image"].write_text("")
    modules["frcnn.inference.a"].write_text("def f():\n    from frcnn.inference import b\n")
    modules["frcnn.inference.b"].write_text("from frcnn.inference.a import f\n")
    assert imports_of(modules["frcnn.model"], modules) == {"frcnn.cli.detect_image"}
    assert layer_of("frcnn.cli.detect_image") < layer_of("frcnn.model")
    assert layer_of("model") < layer_of("frcnn.cli.detect_image")  # the top-level hand-ons sit above everything
    assert imports_of(modules["frcnn.inference.a"], modules) == {"frcnn.inference.b"}
    assert imports_of(modules["frcnn.inference.b"], modules) == {"frcnn.inference.a"}


def test_tests_do_not_import_each_other_or_the_benchmarks():
    tests = {path.stem for path in (ROOT / "tests").glob("test_*.py")}
    benchmarks = {path.stem for path in (ROOT / "benchmarks").glob("*.py")}
    offending = []
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offending += [f"{path.name} imports {n}" for n in names if n in tests | benchmarks | {"conftest"}]
    assert not offending, offending
