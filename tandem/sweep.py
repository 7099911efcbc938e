"""Parameter sweeps: a base scenario plus the parameters to vary, expanded into one scenario
file per case in a sweep folder with a manifest.

    name: pv_study
    base: small_iterative.yaml            # relative to the sweep file
    set: {time.duration: 3h}              # applied to every case
    grid:                                 # every combination
      feeders.*.pv.penetration: [0.0, 0.5]
      coordination.scheme: [none, local]
    cases:                                # and/or an explicit list (combined with the grid)
      - {feeders.0.seed: 1}
      - {feeders.0.seed: 2}

Keys are dotted paths into the scenario (`feeders.0.pv.penetration`; `*` stands for every
feeder). They are checked against the Scenario schema, and every case is validated like a
`tandem run` (schema, files, buses), before anything is written.

The folder holds `sweep.yaml` (the sweep file as written), `manifest.json`, `cases/<id>.yaml`,
and, as cases run, `results/<id>.h5`, `logs/<id>.log` and `state/` (see `tandem.sweep_cases`).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import types
import typing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from scenario.schema import Duration, Scenario, ScenarioError, _read_mapping, _resolve_paths, check_files, describe_validation_error
from tandem.sweep_folder import MANIFEST, SweepFolder

SWEEP_COPY = "sweep.yaml"
SAFE_NAME = r"[A-Za-z0-9_.-]+"
# Set by the sweep itself: every case writes its own file, and cases that run side by side need
# their own broker port.
RESERVED_KEYS = ("output.path", "federation.broker_port")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _slurm_word(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_.:+-]+", value):
        raise ValueError(f"letters, digits and _ . : + - only (got {value!r})")
    return value


class SlurmSpec(_Strict):
    """How `--slurm` asks for resources: one array task per case."""

    partition: str | None = Field(None, description="partition (sbatch --partition); default: the cluster's default")
    account: str | None = Field(None, description="account to charge (sbatch --account)")
    time: Duration = Field(pd.Timedelta("1h"), description="time limit of one case, with units ('90min', '2h') or HH:MM:SS")
    cpus_per_case: PositiveInt = Field(2, description="CPUs of one case (sbatch --cpus-per-task)")
    mem: str = Field("4G", description="memory of one case (sbatch --mem), e.g. 4G or 4000M")
    max_running: PositiveInt | None = Field(None, description="at most this many cases at once (array throttle %N)")
    options: list[str] = Field([], description="further sbatch options, e.g. ['--qos=normal', '--constraint=intel']")
    setup: list[str] = Field([], description="shell lines run before each case (e.g. 'module load hdf5')")

    @field_validator("partition", "account")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        return _slurm_word(value)

    @field_validator("mem")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]*[KMGT]?", value):
            raise ValueError(f"give memory as a whole number with K, M, G or T, e.g. 4G (got {value!r})")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        for option in value:
            if not re.fullmatch(r"--[a-z][a-z-]*(=[^\s]+)?", option):
                raise ValueError(f"an option is one '--name' or '--name=value' without spaces (got {option!r})")
        return value

    @field_validator("setup")
    @classmethod
    def _setup(cls, value: list[str]) -> list[str]:
        for line in value:
            if "\n" in line:
                raise ValueError("each setup entry is one shell line")
        return value


class SweepSpec(_Strict):
    """A sweep file."""

    name: str | None = Field(None, description="sweep name; default: the sweep file's name")
    description: str = ""
    base: str = Field(description="base scenario file, relative to the sweep file")
    set: dict[str, Any] = Field({}, description="dotted scenario keys set in every case")
    grid: dict[str, list[Any]] = Field({}, description="dotted scenario keys and their values: every combination is a case")
    cases: list[dict[str, Any]] = Field([], description="explicit cases (dotted key -> value); combined with every grid point")
    output: str | None = Field(None, description="sweep folder, relative to the working directory; default runs/sweeps/<name>")
    slurm: SlurmSpec = SlurmSpec()

    @field_validator("name")
    @classmethod
    def _safe(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(SAFE_NAME, value):
            raise ValueError(f"sweep names may hold letters, digits, '_', '.' and '-' only (got {value!r})")
        return value

    @field_validator("grid")
    @classmethod
    def _values(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"{key}: give at least one value")
        return value


@dataclass(frozen=True)
class Case:
    """One case of a sweep: its number, id, the swept values and its scenario data."""

    index: int
    id: str
    parameters: dict[str, Any]
    data: dict

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in self.parameters.items())


def _short(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


# -- dotted keys ------------------------------------------------------------------------------


def _branches(annotation: Any) -> tuple[list[type[BaseModel]], list[Any]]:
    """The models and the list element types an annotation allows (anything else is a plain value)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _branches(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        models: list[type[BaseModel]] = []
        lists: list[Any] = []
        for arg in typing.get_args(annotation):
            m, items = _branches(arg)
            models, lists = models + m, lists + items
        return models, lists
    if origin is list:
        return [], [typing.get_args(annotation)[0]]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], []
    return [], []


def check_key(key: str, base: dict, where: str) -> None:
    """Raise ScenarioError unless `key` names a scenario setting (list indices must exist in the base)."""
    if not isinstance(key, str) or not key:
        raise ScenarioError(f"{where}: keys are dotted scenario paths such as feeders.0.pv.penetration (got {key!r})")
    for reserved in RESERVED_KEYS:
        if key == reserved or key.startswith(reserved + ".") or reserved.startswith(key + "."):
            raise ScenarioError(f"{where}: {key}: set by the sweep itself (each case has its own results file and broker port)")
    parts = key.split(".")
    annotation: Any = Scenario
    node: Any = base
    for i, part in enumerate(parts):
        done = ".".join(parts[:i])
        models, lists = _branches(annotation)
        if lists:
            length = len(node) if isinstance(node, list) else 0
            if part == "*":
                pass
            elif not part.isdigit():
                raise ScenarioError(f"{where}: {key}: {done} is a list; give an index (0..{length - 1}) or * (got {part!r})")
            elif int(part) >= length:
                raise ScenarioError(f"{where}: {key}: the base scenario has {length} entr{'y' if length == 1 else 'ies'} in {done} (indices 0..{length - 1})")
            node = node[int(part)] if part.isdigit() and isinstance(node, list) else (node[0] if isinstance(node, list) and node else {})
            annotation = lists[0]
        elif models:
            model = next((m for m in models if part in m.model_fields), None)
            if model is None:
                raise ScenarioError(f"{where}: {key}: unknown scenario key {'.'.join(parts[: i + 1])!r}")
            annotation = model.model_fields[part].annotation
            node = node.get(part, {}) if isinstance(node, dict) else {}
        else:
            raise ScenarioError(f"{where}: {key}: {done} is a single value, not a group of keys")


def _set(data: Any, parts: list[str], value: Any, key: str) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(data, list):
        targets = range(len(data)) if head == "*" else [int(head)]
        for i in targets:
            if rest:
                _set(data[i], rest, value, key)
            else:
                data[i] = copy.deepcopy(value)
        return
    if not rest:
        data[head] = copy.deepcopy(value)
        return
    if data.get(head) is None:
        data[head] = {}
    child = data[head]
    if not isinstance(child, (dict, list)):
        raise ScenarioError(f"{key}: the base scenario sets {head} to {child!r}, not a group of keys")
    _set(child, rest, value, key)


def _effective(dump: Any, parts: list[str]) -> Any:
    """The value a validated scenario has at a dotted key (a list for `*` when feeders differ)."""
    node = dump
    for i, part in enumerate(parts):
        if isinstance(node, list):
            if part == "*":
                values = [_effective(item, parts[i + 1:]) for item in node]
                return values[0] if all(v == values[0] for v in values) else values
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


# -- expansion --------------------------------------------------------------------------------


def load_sweep(path: str | Path) -> SweepSpec:
    source = Path(path)
    if not source.is_file():
        raise ScenarioError(f"sweep file not found: {source}")
    data = _read_mapping(source)
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(describe_validation_error(str(source), exc)) from None


def sweep_name(spec: SweepSpec, path: Path) -> str:
    if spec.name:
        return spec.name
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
    return stem or "sweep"


def expand(spec: SweepSpec, path: Path) -> list[Case]:
    """Every case of the sweep, each validated like `tandem run` would (raises ScenarioError)."""
    from tandem.study import resolve_scenario

    where = str(path)
    base_path = (path.resolve().parent / spec.base).resolve()
    if not base_path.is_file():
        raise ScenarioError(f"{where}: base: scenario file not found: {base_path}")
    base = _resolve_paths(_read_mapping(base_path), base_path.parent)
    output = base.get("output")
    if isinstance(output, dict):
        output.pop("path", None)
    if not spec.grid and not spec.cases:
        raise ScenarioError(f"{where}: give the parameters to vary under grid or cases")
    for key in spec.set:
        check_key(key, base, f"{where}: set")
    for key in spec.grid:
        check_key(key, base, f"{where}: grid")
        if key in spec.set:
            raise ScenarioError(f"{where}: {key} is both in set and in grid")
    for i, explicit in enumerate(spec.cases):
        if not explicit:
            raise ScenarioError(f"{where}: cases.{i}: an empty case")
        for key in explicit:
            check_key(key, base, f"{where}: cases.{i}")
            if key in spec.grid or key in spec.set:
                raise ScenarioError(f"{where}: cases.{i}: {key} is also in {'grid' if key in spec.grid else 'set'}")
    for key, value in spec.set.items():
        _set(base, key.split("."), value, f"{where}: set: {key}")

    name = sweep_name(spec, path)
    keys = list(dict.fromkeys([k for c in spec.cases for k in c] + list(spec.grid)))
    points = [dict(zip(spec.grid, values)) for values in itertools.product(*spec.grid.values())]
    combos = [{**explicit, **point} for explicit in (spec.cases or [{}]) for point in points]
    width = max(3, len(str(len(combos) - 1)))
    cases, seen = [], {}
    for index, chosen in enumerate(combos):
        case_id = f"case_{index:0{width}d}"
        fingerprint = json.dumps(chosen, sort_keys=True, default=str)
        if fingerprint in seen:
            raise ScenarioError(f"{where}: {case_id} and {seen[fingerprint]} set the same values ({fingerprint})")
        seen[fingerprint] = case_id
        data = copy.deepcopy(base)
        data["name"] = f"{name}_{case_id}"
        for key, value in chosen.items():
            _set(data, key.split("."), value, f"{where}: {case_id}: {key}")
        federation = data.setdefault("federation", {})
        if isinstance(federation, dict):
            federation["broker_port"] = "auto"
        label = ", ".join(f"{k}={_short(v)}" for k, v in chosen.items())
        try:
            scenario = Scenario.model_validate(data)
        except ValidationError as exc:
            raise ScenarioError(describe_validation_error(f"{where}: {case_id} ({label})", exc)) from None
        try:
            check_files(scenario)
            resolve_scenario(scenario)
        except ScenarioError as exc:
            raise ScenarioError(f"{where}: {case_id} ({label}): {exc}") from None
        dump = json.loads(scenario.to_json())
        parameters = {k: chosen[k] if k in chosen else _effective(dump, k.split(".")) for k in keys}
        cases.append(Case(index, case_id, parameters, data))
    return cases


# -- the folder -------------------------------------------------------------------------------


def default_folder(spec: SweepSpec, path: Path) -> Path:
    return Path(spec.output) if spec.output else Path("runs/sweeps") / sweep_name(spec, path)


def _case_text(case: Case, name: str) -> str:
    header = f"# Case {case.id} of sweep {name}: {case.label}\n# Written by `tandem sweep`; the sweep's manifest.json lists every case.\n"
    return header + yaml.safe_dump(case.data, sort_keys=False, default_flow_style=False)


def write_folder(spec: SweepSpec, path: Path, cases: list[Case], folder: Path) -> "SweepFolder":
    """Write (or keep) the sweep folder. A folder made from a different sweep is refused, so
    finished results never stand for scenarios other than the ones in it."""
    folder = folder.resolve()
    name = sweep_name(spec, path)
    texts = {c.id: _case_text(c, name) for c in cases}
    existing = folder / MANIFEST
    if existing.is_file():
        old = SweepFolder(folder)
        same = [c["id"] for c in old.cases] == [c.id for c in cases] and all(
            (folder / c["scenario"]).is_file() and (folder / c["scenario"]).read_text() == texts[c["id"]] for c in old.cases
        )
        if not same:
            raise ScenarioError(
                f"{folder} holds a different sweep ({len(old.cases)} cases from {old.manifest.get('sweep_file')}); "
                "remove it or give another output folder"
            )
        return old
    for sub in ("cases", "results", "logs", "state"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / SWEEP_COPY).write_text(path.read_text())
    entries = []
    for case in cases:
        scenario_path = Path("cases") / f"{case.id}.yaml"
        (folder / scenario_path).write_text(texts[case.id])
        entries.append({
            "id": case.id, "index": case.index, "parameters": case.parameters,
            "scenario": str(scenario_path), "results": str(Path("results") / f"{case.id}.h5"),
        })
    manifest = {
        "name": name,
        "description": spec.description,
        "sweep_file": str(path.resolve()),
        "base": str((path.resolve().parent / spec.base).resolve()),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": list(cases[0].parameters) if cases else [],
        "cases": entries,
    }
    staging = folder / (MANIFEST + ".tmp")
    staging.write_text(json.dumps(manifest, indent=2, default=str))
    staging.replace(existing)
    return SweepFolder(folder)


def prepare(path: str | Path, output: str | Path | None = None) -> tuple[SweepSpec, "SweepFolder"]:
    """Read, expand and validate a sweep file and write its folder (raises ScenarioError)."""
    path = Path(path)
    spec = load_sweep(path)
    cases = expand(spec, path)
    return spec, write_folder(spec, path, cases, Path(output) if output else default_folder(spec, path))
