"""The house is layered: every import, at file level or inside a function, runs downwards.

The floors are declared once, in pyproject.toml's package list (top first; packages on one
line share a floor and do not import each other)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def floors() -> list[list[str]]:
    """pyproject's package list, read as lines: one floor a line, the top first."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[\n(.*?)^\]", text, re.S | re.M).group(1)
    out = []
    for line in block.splitlines():
        names = [n for n in re.findall(r'"([\w.]+)"', line) if "." not in n]  # sub-packages live with their package
        if names:
            out.append(names)
    listed = tomllib.loads(text)["tool"]["setuptools"]["packages"]
    assert sorted(n for floor in out for n in floor) == sorted(n for n in listed if "." not in n)
    return out


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Top-level names of every import in a file (relative imports stay in the package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def test_floors_cover_every_package_folder():
    listed = {n for floor in floors() for n in floor}
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert on_disk == listed, "every package folder is on exactly one floor of pyproject.toml"
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    nested = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in ROOT.glob("*/*/__init__.py")} - {"tests"}
    assert nested <= packages, f"sub-packages missing from pyproject.toml (a wheel would lack them): {sorted(nested - packages)}"


def test_imports_run_downwards():
    plan = floors()
    level = {name: i for i, floor in enumerate(plan) for name in floor}  # 0 is the top
    upward = []
    for package, i in level.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, line in imported_packages(path):
                if name in level and name != package and level[name] <= i:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {name} (floor {level[name]}, own floor {i})")
    assert not upward, "imports that do not run downwards:\n" + "\n".join(upward)


@pytest.mark.parametrize("source, expected", [
    ("import grid.feeder\nfrom scenario.schema import X\n", {"grid", "scenario"}),
    ("def f():\n    from tandem.cli import main\n", {"tandem"}),
    ("from . import sibling\n", set()),
])
def test_import_reader_finds_function_level_imports(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert {name for name, _ in imported_packages(path)} == expected


def _code_words(path: Path) -> set[str]:
    """The names, attributes, imported names and non-docstring strings of a file's code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words |= set(node.name.split("."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            words |= set(node.module.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words |= set(re.findall(r"\w+", node.value))
    return words


@pytest.mark.parametrize("key, pattern", [
    ("dg", r"dg|DG\w*|Dg\w*|dg_\w+"),
    ("flexible_load", r"flexible_load\w*|FlexibleLoad\w*|FLEXIBLE_LOAD"),
])
def test_a_der_kind_lives_in_five_files(key, pattern):
    """Gensets and flexible loads were added as the kinds tables say a kind is added: their
    code names them in five files (a module and a registry line on each side, and the spec);
    everything else (wire, results, set-points, KPIs, report, receding horizon) reads the
    declarations. The other kinds may still have typed shorthands (fleet.pv, ...)."""
    own = {f"grid/ders/{key}.py", "grid/ders/registry.py", f"coordination/ders/{key}.py",
           "coordination/ders/registry.py", "scenario/schema.py"}
    word = re.compile(rf"^(?:{pattern})$")
    naming = set()
    for package in (n for floor in floors() for n in floor):
        for path in (ROOT / package).rglob("*.py"):
            if any(word.match(w) for w in _code_words(path)):
                naming.add(str(path.relative_to(ROOT)))
    assert naming - own - {f"grid/ders/{other}.py" for other in ("dg", "flexible_load")} \
        - {f"coordination/ders/{other}.py" for other in ("dg", "flexible_load")} == set()
    assert own <= naming | {"grid/ders/registry.py"}, "the declarations are where the test expects them"
