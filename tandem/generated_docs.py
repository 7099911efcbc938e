"""Doc tables generated from the declarations they describe: the publications and the DER
vector of docs/interfaces.md (federates/interfaces.py) and the datasets of docs/results.md
(results/catalogue.py). Each sits between two marker comments:

    <!-- generated: NAME (python -m tandem.generated_docs) -->
    ...
    <!-- end generated: NAME -->

`python -m tandem.generated_docs` rewrites them; with `--check` it only says which are stale
(exit 1), as tests/test_generated_docs.py does.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable

from federates.interfaces import markdown_der_vector, markdown_publications
from federates.processes import markdown_processes
from grid.ders.registry import READINGS
from grid.setpoints import Setpoints
from results.catalogue import markdown_coordinator, markdown_how, markdown_series, markdown_static

ROOT = Path(__file__).resolve().parents[1]

def markdown_setpoints() -> str:
    """The parts of a set-point message (grid.setpoints.Setpoints), each optional."""
    lines = ["| part | value of each DER, by name |", "|---|---|"]
    lines += [f"| `{name}` | {field.description} |" for name, field in Setpoints.model_fields.items()]
    return "\n".join(lines)


# (doc file, section name, what renders it)
SECTIONS: tuple[tuple[str, str, Callable[[], str]], ...] = (
    ("docs/interfaces.md", "processes", markdown_processes),
    ("docs/interfaces.md", "publications", markdown_publications),
    ("docs/interfaces.md", "der-vector", markdown_der_vector),
    ("docs/interfaces.md", "setpoints", markdown_setpoints),
    ("docs/results.md", "static-datasets", lambda: markdown_static(READINGS)),
    ("docs/results.md", "time-series", lambda: markdown_series(READINGS)),
    ("docs/results.md", "coordinator-datasets", markdown_coordinator),
    ("docs/results.md", "dataset-sources", markdown_how),
)


def _pattern(name: str) -> re.Pattern:
    return re.compile(
        rf"(<!-- generated: {re.escape(name)} [^\n]*-->\n)(.*?)(<!-- end generated: {re.escape(name)} -->)", re.S)


def section(text: str, name: str) -> str:
    """The generated text of a section as the doc holds it."""
    found = _pattern(name).search(text)
    if found is None:
        raise KeyError(f"no generated section {name!r}")
    return found.group(2)


def replace(text: str, name: str, content: str) -> str:
    section(text, name)  # must be there
    return _pattern(name).sub(lambda m: m.group(1) + content + "\n" + m.group(3), text)


def stale(root: Path = ROOT) -> list[str]:
    """Sections whose doc text differs from what their declaration renders."""
    return [f"{doc}: {name}" for doc, name, render in SECTIONS
            if section((root / doc).read_text(), name) != render() + "\n"]


def write(root: Path = ROOT) -> None:
    for doc, name, render in SECTIONS:
        path = root / doc
        path.write_text(replace(path.read_text(), name, render()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale sections (exit 1 if any)")
    args = parser.parse_args()
    if args.check:
        out = stale()
        print("\n".join(f"stale: {s}" for s in out) or "up to date")
        return 1 if out else 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
