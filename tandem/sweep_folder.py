"""A sweep folder read through its manifest (see `tandem.sweep`). Light on imports: every case's
runner reads it before it starts `tandem run`."""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"


def _error(message: str) -> Exception:
    from scenario.schema import ScenarioError  # only on the way out: it imports pandas

    return ScenarioError(message)


class SweepFolder:
    """A sweep folder, read through its manifest."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder).resolve()
        manifest = self.path / MANIFEST
        if self.path.is_file() and self.path.suffix.lower() in (".yaml", ".yml", ".toml", ".json"):
            raise _error(f"{folder}: give the sweep folder (the one holding {MANIFEST}), not a file")
        if not manifest.is_file():
            raise _error(f"{folder}: not a sweep folder (no {MANIFEST})")
        try:
            self.manifest = json.loads(manifest.read_text())
            self.cases: list[dict] = list(self.manifest["cases"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _error(f"{manifest}: unreadable manifest ({exc})") from None

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def parameters(self) -> list[str]:
        return list(self.manifest.get("parameters", []))

    def case(self, key: str | int) -> dict:
        for case in self.cases:
            if case["id"] == key or case["index"] == key or str(case["index"]) == str(key):
                return case
        raise _error(f"{self.path}: no case {key!r} in the manifest")

    def results(self, case: dict) -> Path:
        return self.path / case["results"]

    def scenario(self, case: dict) -> Path:
        return self.path / case["scenario"]
