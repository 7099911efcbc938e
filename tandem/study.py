"""Running a study from Python: validate, launch the federation, summarise.

    from scenario.schema import load_scenario
    from tandem.study import run_study
    outcome = run_study(load_scenario("runs/small_iterative.yaml"))
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from federates import interfaces as names
from federates.base import WARNING_PREFIX
from federates.launcher import Progress, RunPlan, default_output, feeder_groups, plan_run, run_federation
from grid.networks import network_summary
from grid.transmission import check_boundary_buses
from results.checkpoint import Checkpoint, CheckpointError, read_checkpoint
from results.store import ResultsWriteError, check_writable
from scenario.schema import Scenario, ScenarioError, _apply_overrides, describe_validation_error
from tandem.sizing import check_memory
from tandem.summary import RunSummary, summarize


@dataclass
class RunOutcome:
    output: Path
    run_dir: Path
    wall_seconds: float
    summary: RunSummary | None  # None for a part of a split run without the recorder


def resolve_scenario(scenario: Scenario) -> tuple[Scenario, list[int]]:
    """Check the scenario against its network (before any process starts) and pin buses to indices."""
    try:
        net = network_summary(scenario.transmission.network)
    except Exception as exc:  # pandapower raises many types for a file it cannot read
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScenarioError(f"transmission.network: cannot load {scenario.transmission.network}: {reason}") from None
    buses = check_boundary_buses(scenario, net)
    feeders = [f.model_copy(update={"bus": b, "name": f.label}) for f, b in zip(scenario.feeders, buses)]
    return scenario.model_copy(update={"feeders": feeders}), buses


def prepare_run(
    scenario: Scenario,
    scenario_source: str = "",
    output: str | Path | None = None,
    observers: int = 0,
    federates: list[str] | None = None,
) -> RunPlan:
    """Validate against the network and write the run folder; starts nothing (raises ScenarioError).
    `federates` names the processes to start here, for a run split over hosts (default: all)."""
    fed = scenario.federation
    check_memory(scenario, len(feeder_groups(len(scenario.feeders), fed.feeder_processes, scenario.coupling.mode == "iterative")))
    target = Path(output or scenario.output.path or default_output(scenario))
    try:
        check_writable(target)
    except ResultsWriteError as exc:
        raise ScenarioError(str(exc)) from None
    resolved, buses = resolve_scenario(scenario)
    return plan_run(resolved, scenario_source or resolved.to_json(), buses, target, observers, federates)


def resume_scenario(results: str | Path, overrides: dict[str, object] | None = None) -> tuple[Scenario, Checkpoint]:
    """The scenario stored in an unfinished run's file and its last checkpoint. `overrides`
    (dotted keys) may change only what does not touch the results: `federation.*` and
    `output.checkpoint_every`; the number of feeder processes stays that of the file (its
    timing dataset has a column for each). Raises ScenarioError if the file cannot be resumed."""
    fixed = [key for key in overrides or {} if not (key.startswith("federation.") or key == "output.checkpoint_every")]
    if fixed:
        raise ScenarioError(f"--resume continues with the scenario stored in {results}; {fixed[0]} cannot change")
    try:
        checkpoint = read_checkpoint(results)
    except CheckpointError as exc:
        raise ScenarioError(str(exc)) from None
    processes = (overrides or {}).get("federation.feeder_processes", checkpoint.feeder_processes)
    if processes != checkpoint.feeder_processes:
        raise ScenarioError(f"{results} was run with {checkpoint.feeder_processes} feeder processes, "
                            f"which a resumed run keeps (got {processes})")
    overrides = {**(overrides or {}), "federation.feeder_processes": checkpoint.feeder_processes}
    data = _apply_overrides(json.loads(checkpoint.scenario_json), overrides, str(results))
    try:
        return Scenario.model_validate(data), checkpoint
    except ValidationError as exc:
        raise ScenarioError(describe_validation_error(f"{results} (stored scenario)", exc)) from None


def prepare_resume(results: str | Path, overrides: dict[str, object] | None = None, observers: int = 0) -> RunPlan:
    """Plan the continuation of an unfinished run from its file's last checkpoint: the file is
    cut back to the checkpoint's rows, and the run goes on into it (raises ScenarioError)."""
    scenario, checkpoint = resume_scenario(results, overrides)
    resolved, buses = resolve_scenario(scenario)
    try:
        return plan_run(resolved, checkpoint.scenario_source, buses, Path(results), observers, resume=checkpoint)
    except CheckpointError as exc:
        raise ScenarioError(str(exc)) from None


def run_warnings(run_dir: Path) -> list[str]:
    """The warnings the run's processes wrote to their logs so far, in log order."""
    found = []
    for log in sorted((run_dir / "logs").glob("*.log")):
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        found += [line[len(WARNING_PREFIX):] for line in lines if line.startswith(WARNING_PREFIX)]
    return found


def execute_run(plan: RunPlan, on_progress: Callable[[Progress], None] | None = None) -> RunOutcome:
    """Start the federation and wait for it; raises RunFailed if it fails."""
    started = time.perf_counter()
    run_federation(plan, on_progress)
    wall = time.perf_counter() - started
    summary = summarize(plan.config.output) if names.RECORDER in plan.commands else None
    return RunOutcome(Path(plan.config.output), plan.run_dir, wall, summary)


def run_study(
    scenario: Scenario,
    scenario_source: str = "",
    output: str | Path | None = None,
    observers: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunOutcome:
    """Run the co-simulation: raises ScenarioError before starting, RunFailed if it fails."""
    return execute_run(prepare_run(scenario, scenario_source, output, observers), on_progress)
