"""The layers of src/xlsr import only downward, and no folder-level import cycle exists.

LAYERS is the one place the allowed order is written (docs/ARCHITECTURE.md describes it). A module may
import modules of its own layer's folder and of any layer below; never one above, and never a sibling
at the same rank. Function-local imports count too: a layer break hidden inside a function is still one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "xlsr"

# Top to bottom. Each entry is one rank; a name is a folder of src/xlsr or a top-level module.
LAYERS: list[tuple[str, ...]] = [
    ("__init__", "__main__"),
    ("cli",),
    ("demo",),
    ("released",),
    ("analysis",),
    ("decode",),
    ("train",),
    ("interop",),
    ("data",),
    ("text",),
    ("model",),
    ("config", "progress", "devices", "folder_lock"),
    ("atomic", "cores", "errors", "jsonl", "rates", "stop_clock", "version"),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def unit_of(path: Path) -> str:
    """The layer name of a source file: its top folder under src/xlsr, or its module name."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_units(path: Path, package: Path = PACKAGE) -> set[tuple[str, int]]:
    """(layer, line) for every xlsr module the file imports, at any depth of the syntax tree."""
    package_parts = list(path.relative_to(package).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's own package
                base = package_parts[: len(package_parts) - (node.level - 1)]
                names = [".".join(["xlsr", *base, *([node.module] if node.module else [])])]
                if not node.module:
                    names = [f"{names[0]}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
                if node.module == "xlsr":  # `from xlsr import x`: a submodule, else a name of the package root
                    names = [f"xlsr.{alias.name}" if _is_module(package / alias.name) else "xlsr.__init__"
                             for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "xlsr" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def _is_module(path: Path) -> bool:
    return path.is_dir() or path.with_suffix(".py").is_file()


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {unit_of(p) for p in source_files()}
    missing = sorted(units - RANK.keys())
    assert not missing, f"add these to LAYERS in {Path(__file__).name}: {missing}"


def test_imports_go_only_downward():
    breaks = []
    for path in source_files():
        unit = unit_of(path)
        for target, line in imported_units(path):
            if target == unit or target not in RANK or unit not in RANK:
                continue
            if RANK[target] <= RANK[unit]:
                breaks.append(f"{path.relative_to(PACKAGE)}:{line}: {unit} imports {target}")
    assert not breaks, "imports that go up or sideways:\n" + "\n".join(sorted(breaks))


def test_no_folder_level_cycle():
    edges: dict[str, set[str]] = {}
    for path in source_files():
        unit = unit_of(path)
        edges.setdefault(unit, set()).update(t for t, _ in imported_units(path) if t != unit)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    return trail + [start]
                if nxt not in trail:
                    stack.append((nxt, trail + [nxt]))
        return None

    cycles = [c for u in sorted(edges) if (c := cycle_from(u))]
    assert not cycles, "import cycle: " + " -> ".join(cycles[0])


@pytest.mark.parametrize("source, expected", [
    ("from xlsr.train.finetune import x\n", {("train", 1)}),
    ("def f():\n    import xlsr.decode.greedy\n", {("decode", 2)}),
    ("from ..decode import greedy\n", {("decode", 1)}),
    ("from . import vocab\n", {("text", 1)}),
    ("from xlsr import errors\n", {("errors", 1)}),
    ("from xlsr import load_pretrained\n", {("__init__", 1)}),
])
def test_import_parser_sees_every_form(tmp_path, source, expected):
    fake_pkg = tmp_path / "xlsr"
    (fake_pkg / "text").mkdir(parents=True)
    module = fake_pkg / "text" / "example.py"
    module.write_text(source)
    (fake_pkg / "errors.py").write_text("")
    assert imported_units(module, fake_pkg) == expected
