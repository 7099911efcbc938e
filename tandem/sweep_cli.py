"""`tandem sweep`: expand a sweep, run it here or on Slurm, show its state, collect its KPIs."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from scenario.schema import ScenarioError

EXIT_RUN_FAILED = 1

console = Console(stderr=True, soft_wrap=True, highlight=False)

USAGE = """tandem sweep SWEEP.yaml [-o DIR] [--local N | --slurm [--dry-run] [slurm options]]
       tandem sweep status DIR [--json]
       tandem sweep collect DIR [-o STEM]"""


def add_sweep_parser(commands) -> None:
    sweep = commands.add_parser(
        "sweep", help="parameter sweeps: expand, run here or on Slurm, status, collect KPIs", usage=USAGE,
        description=(
            "Expand a sweep file (a base scenario plus parameters to vary: a grid and/or a list of cases) into one "
            "scenario per case in a sweep folder with a manifest; with --local N run the cases here, N at a time, "
            "or with --slurm submit them as a Slurm job array. Running it again runs only the cases whose results "
            "are not complete. 'status DIR' shows each case's state; 'collect DIR' writes every case's KPIs "
            "with the swept parameters as one table (CSV and Parquet)."
        ),
    )
    sweep.add_argument("target", metavar="SWEEP.yaml | status | collect", help="a sweep file, or status / collect")
    sweep.add_argument("folder", nargs="?", metavar="DIR", help="sweep folder (for status and collect)")
    sweep.add_argument("-o", "--output", help="sweep folder to write (default: the sweep's output, or runs/sweeps/<name>); "
                       "for collect: the table's path without suffix (default: DIR/kpis)")
    how = sweep.add_mutually_exclusive_group()
    how.add_argument("--local", type=int, metavar="N", help="run the cases on this machine, N at a time")
    how.add_argument("--slurm", action="store_true", help="write an sbatch job-array script (one case per task) and submit it")
    sweep.add_argument("--dry-run", action="store_true", help="with --slurm: write the script, do not submit it")
    sweep.add_argument("--partition", help="Slurm partition (overrides slurm.partition)")
    sweep.add_argument("--account", help="Slurm account (overrides slurm.account)")
    sweep.add_argument("--time", metavar="LIMIT", help="time limit per case, e.g. 2h or 01:30:00 (overrides slurm.time)")
    sweep.add_argument("--cpus", type=int, metavar="N", help="CPUs per case (overrides slurm.cpus_per_case)")
    sweep.add_argument("--mem", help="memory per case, e.g. 4G (overrides slurm.mem)")
    sweep.add_argument("--json", action="store_true", help="with status: print the states as JSON")


def cmd_sweep(args: argparse.Namespace) -> int:
    from tandem.slurm import SlurmError

    try:
        if args.target in ("status", "collect"):
            if not args.folder:
                raise ScenarioError(f"tandem sweep {args.target}: give the sweep folder (DIR)")
            return _status(args) if args.target == "status" else _collect(args)
        if args.folder:
            raise ScenarioError(f"unexpected argument {args.folder!r}: 'tandem sweep SWEEP.yaml' takes one file")
        return _sweep(args)
    except SlurmError as exc:
        console.print(f"[bold red]error[/]: {exc}")
        return EXIT_RUN_FAILED


def _slurm_spec(spec, args: argparse.Namespace):
    from pydantic import ValidationError

    from scenario.schema import describe_validation_error
    from tandem.sweep import SlurmSpec

    overrides = {"partition": args.partition, "account": args.account, "time": args.time,
                 "cpus_per_case": args.cpus, "mem": args.mem}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        return SlurmSpec.model_validate({**spec.slurm.model_dump(), **overrides})
    except ValidationError as exc:
        raise ScenarioError(describe_validation_error("slurm options", exc)) from None


def _sweep(args: argparse.Namespace) -> int:
    from tandem.sweep import prepare
    from tandem.sweep_cases import FAILED, PENDING, RUNNING, sweep_states

    if args.local is not None and args.local < 1:
        raise ScenarioError(f"--local must be 1 or more (got {args.local})")
    if args.dry_run and not args.slurm:
        raise ScenarioError("--dry-run goes with --slurm")
    spec, folder = prepare(args.target, args.output)
    slurm_spec = _slurm_spec(spec, args) if args.slurm else None
    n = len(folder.cases)
    console.print(f"sweep [bold]{folder.name}[/]: {n} case{'s' * (n != 1)} in {folder.path}")
    if args.local is None and not args.slurm:
        console.print(f"run them with: tandem sweep {args.target} --local N   (or --slurm)")
        return 0
    states = sweep_states(folder)
    busy = [s for s in states if s.state == RUNNING or (s.state == PENDING and s.where)]
    todo = [folder.case(s.id) for s in states if s.state == FAILED or (s.state == PENDING and not s.where)]
    done = sum(s.state == "done" for s in states)
    if done or busy:
        console.print(f"  {done} done already, {len(busy)} running or queued: not started again")
    if not todo:
        console.print("nothing to run" + (": every case is done" if done == n else ""))
        return 0
    if args.slurm:
        return _submit(folder, slurm_spec, todo, args.dry_run)
    return _run_local(folder, todo, args.local)


def _run_local(folder, todo: list[dict], parallel: int) -> int:
    from tandem.sweep_cases import EXIT_BUSY, run_local

    console.print(f"running {len(todo)} case{'s' * (len(todo) != 1)}, {parallel} at a time")
    started = time.monotonic()
    count = [0]

    def finished(f) -> None:
        count[0] += 1
        label = ", ".join(f"{k}={v}" for k, v in f.case["parameters"].items())
        head = f"[{count[0]}/{len(todo)}] {f.case['id']}"
        if f.code == 0:
            console.print(f"{head} [green]done[/] in {f.wall_s:.1f} s  ({label})")
        elif f.code == EXIT_BUSY:
            console.print(f"{head} skipped: {f.error}")
        else:
            console.print(f"{head} [bold red]failed[/] after {f.wall_s:.1f} s  ({label}): {f.error}")

    results = run_local(folder, todo, parallel, on_finished=finished)
    failed = [f for f in results if f.code not in (0, EXIT_BUSY)]
    skipped = sum(f.code == EXIT_BUSY for f in results)
    console.print(f"{len(results) - len(failed) - skipped} done, {len(failed)} failed{f', {skipped} skipped' if skipped else ''} in {time.monotonic() - started:.1f} s; "
                  f"state: tandem sweep status {folder.path}; KPIs: tandem sweep collect {folder.path}")
    return EXIT_RUN_FAILED if failed else 0


def _submit(folder, spec, todo: list[dict], dry_run: bool) -> int:
    from tandem.slurm import submit, write_script

    indices = [c["index"] for c in todo]
    script = write_script(folder, spec, indices)
    if dry_run:
        console.print(f"wrote {script} ({len(indices)} array tasks); submit it with: sbatch {script}")
        print(script)
        return 0
    job = submit(folder, script, indices)
    console.print(f"submitted job array {job} ({len(indices)} cases) from {script}; "
                  f"follow it with: tandem sweep status {folder.path}")
    print(job)
    return 0


def _status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tandem.sweep_cases import RUNNING, STATES, sweep_states
    from tandem.sweep_folder import SweepFolder

    folder = SweepFolder(args.folder)
    states = sweep_states(folder)
    if args.json:
        print(json.dumps([asdict(s) for s in states], indent=2, default=str))
        return 0
    counts = ", ".join(f"{sum(s.state == k for s in states)} {k}" for k in STATES)
    print(f"sweep {folder.name}: {len(states)} cases: {counts}")
    width = max(len(s.id) for s in states) if states else 4
    for s in states:
        steps = f"{s.steps}/{s.steps_planned}" if s.steps is not None else "-"
        label = ", ".join(f"{k}={v}" for k, v in s.parameters.items())
        extra = f"  [{s.where}]" if s.where else ""
        print(f"{s.id:<{width}}  {s.state:<7}  steps {steps:<9}  {label}{extra}")
        if s.error:
            print(f"{'':<{width}}  error: {s.error}")
        if s.checkpoint is not None and s.state != RUNNING:
            print(f"{'':<{width}}  checkpoint after step {s.checkpoint}: running the sweep again resumes it there")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from tandem.sweep_folder import SweepFolder
    from tandem.sweep_table import collect, write_tables

    folder = SweepFolder(args.folder)
    table = collect(folder)
    stem = Path(args.output) if args.output else folder.path / "kpis"
    csv, parquet = write_tables(table, stem)
    with_results = int(table["steps"].notna().sum()) if "steps" in table else 0
    console.print(f"{len(table)} cases ({with_results} with results), {table.shape[1]} columns: {csv} and {parquet}")
    shown = ["state", *folder.parameters] + [c for c in ("feeder_vmin_pu", "feeder_vmax_pu", "voltage_violation_node_h",
                                                         "pv_curtailment_MWh", "wall_time_s") if c in table]
    print(table[shown].to_string())
    return 0
