"""The `tandem` command."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scenario.schema import DEFAULT_SCENARIO, SCHEMES, ScenarioError, load_scenario

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2

def _stderr_console() -> Console:
    """The console for this process's stderr (no automatic highlighting: it took "line:9" for a time)."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


console = _stderr_console()


def _add_run_parser(commands) -> None:
    run = commands.add_parser(
        "run",
        help="run a co-simulation study",
        description=(
            "Run a T&D co-simulation: a HELICS broker, a pandapower transmission federate, OpenDSS feeder "
            "federates and an HDF5 recorder, each its own process. Without SCENARIO the built-in default "
            "study runs (IEEE 118 with IEEE 13- and 123-node feeders, 2 days at 5-minute steps)."
        ),
    )
    run.add_argument("scenario", nargs="?", help="scenario file (.yaml, .toml or .json); default: the built-in study")
    run.add_argument("-o", "--output", help="HDF5 file to write (default: scenario output.path or runs/output/<name>_<time>.h5)")
    run.add_argument("--coupling", choices=["loose", "iterative"], help="override coupling.mode")
    run.add_argument("--tolerance", type=float, metavar="PU", help="override coupling.tolerance_pu (iterative coupling)")
    run.add_argument("--max-iterations", type=int, metavar="N", help="override coupling.max_iterations")
    run.add_argument("--scheme", metavar="NAME", help=f"override coordination.scheme ({', '.join(SCHEMES)})")
    run.add_argument("--duration", metavar="D", help="override time.duration, with units (e.g. 6h, 2d)")
    run.add_argument("--step", metavar="S", help="override time.step, with units (e.g. 5min, 60s)")
    run.add_argument("--feeder-processes", metavar="N", help="override federation.feeder_processes (a number or 'auto')")
    run.add_argument("--broker-port", type=int, metavar="PORT", help="override federation.broker_port (default: a free port)")
    run.add_argument("--broker-address", metavar="ADDR", help="override federation.broker_address (where federates connect)")
    run.add_argument("--broker-interface", metavar="ADDR", help="override federation.broker_interface (where the broker listens)")
    run.add_argument("--local-interface", metavar="ADDR", help="override federation.local_interface (where this host's federates listen)")
    run.add_argument(
        "--federates",
        metavar="NAMES",
        help=(
            "start only these processes, comma-separated (broker, transmission, feeders_<g>, coordinator, recorder); "
            "the others are started on other hosts with the same scenario. See docs/multihost.md"
        ),
    )
    run.add_argument(
        "--observers",
        type=int,
        default=0,
        metavar="N",
        help="let N external HELICS federates (e.g. helics_recorder) join the broker; the run waits for them",
    )
    run.add_argument("--checkpoint-every", metavar="D",
                     help="override output.checkpoint_every: save the state needed to continue the run this often (e.g. 30min)")
    run.add_argument("--resume", metavar="RUN.h5",
                     help="continue an unfinished run from its file's last checkpoint, into the same file, with the scenario it holds")
    run.add_argument("--show-scenario", action="store_true", help="print the validated scenario as JSON and exit")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary; only errors")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    pairs = {
        "coupling.mode": args.coupling,
        "coupling.tolerance_pu": args.tolerance,
        "coupling.max_iterations": args.max_iterations,
        "coordination.scheme": args.scheme,
        "time.duration": args.duration,
        "time.step": args.step,
        "federation.broker_port": args.broker_port,
        "federation.broker_address": args.broker_address,
        "federation.broker_interface": args.broker_interface,
        "federation.local_interface": args.local_interface,
        "output.checkpoint_every": args.checkpoint_every,
        "federation.feeder_processes": (
            int(args.feeder_processes) if args.feeder_processes and args.feeder_processes.isdigit() else args.feeder_processes
        ),
    }
    return {key: value for key, value in pairs.items() if value is not None}


def _print_summary(outcome) -> None:
    s = outcome.summary
    fmt = lambda e: f"{e.value:.4f} pu at {e.where}, {e.time}" if e else "n/a"  # noqa: E731
    console.print(f"[bold green]Run complete[/]: {s.steps} steps in {outcome.wall_seconds:.1f} s "
                  f"({s.steps / max(outcome.wall_seconds, 1e-9):.1f} steps/s)")
    console.print(f"  results:              {s.path}")
    console.print(f"  logs and configs:     {outcome.run_dir}")
    console.print(f"  feeder voltage min:   {fmt(s.feeder_vmin)}")
    console.print(f"  feeder voltage max:   {fmt(s.feeder_vmax)}")
    console.print(f"  transmission V range: {fmt(s.transmission_vmin)} .. {fmt(s.transmission_vmax)}")
    if s.max_branch_loading:
        b = s.max_branch_loading
        console.print(f"  max branch loading:   {b.value:.1f} % on {b.where}, {b.time}")
    if s.coupling == "iterative":
        console.print(f"  coupling (iterative): {s.mean_iterations:.2f} iterations/step on average, max {s.max_iterations}, "
                      f"largest final mismatch {s.max_mismatch_pu:.2e} pu, {s.steps_not_converged} steps not converged")
    else:
        console.print(f"  coupling (loose):     one exchange per step; largest one-step voltage lag {s.max_mismatch_pu:.2e} pu")


_stopping: list[int] = []  # the stop signal the running `tandem run` got, if any


def _stop_run(signum, frame) -> None:
    """The first Ctrl-C or SIGTERM stops the run; later ones do nothing, so they cannot cut its
    cleanup short (a cancelled Slurm case gets SIGTERM from Slurm and SIGINT from its runner)."""
    if _stopping:
        return
    _stopping.append(signum)
    raise KeyboardInterrupt(*(() if signum == signal.SIGINT else (signal.Signals(signum).name,)))


def cmd_run(args: argparse.Namespace) -> int:
    from federates import interfaces as names
    from federates.launcher import RunFailed
    from tandem.study import execute_run, prepare_resume, prepare_run, resume_scenario, run_warnings

    if args.resume and (args.scenario or args.output):
        raise ScenarioError(f"--resume continues {args.resume} with the scenario it holds; drop the "
                            f"{'scenario file' if args.scenario else '--output'}")
    source_path = Path(args.scenario) if args.scenario else DEFAULT_SCENARIO
    if args.resume:
        scenario = resume_scenario(args.resume, _overrides(args))[0]
    else:
        scenario = load_scenario(args.scenario, overrides=_overrides(args))
    if args.show_scenario:
        print(scenario.to_json())
        return 0
    if args.observers < 0:
        raise ScenarioError(f"--observers must be 0 or more (got {args.observers})")
    federates = None if args.federates is None else [n.strip() for n in args.federates.split(",") if n.strip()]
    try:
        if args.resume:
            plan = prepare_resume(args.resume, _overrides(args), args.observers)
        else:
            plan = prepare_run(scenario, source_path.read_text(), args.output, args.observers, federates)
    except RunFailed as exc:  # no free port, no broker executable
        console.print(f"[bold red]error[/]: {exc}", highlight=False, soft_wrap=True)
        return EXIT_RUN_FAILED
    resumed_from = plan.config.first_step
    if args.observers and not args.quiet:
        console.print(f"waiting for {args.observers} observer federate(s) on broker port {plan.config.broker.port} "
                      f"(core type {plan.config.broker.core_type})")
    if plan.elsewhere and not args.quiet:
        b = plan.config.broker
        console.print(f"starting {', '.join(plan.commands)} with broker {b.address}:{b.port}; "
                      f"started elsewhere: {', '.join(plan.elsewhere)}", highlight=False)

    start, step = pd.Timestamp(scenario.time.start), scenario.time.step
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[simtime]}"), TextColumn("{task.fields[rate]} steps/s"), TimeElapsedColumn(),
        console=console, disable=args.quiet or names.RECORDER not in plan.commands,  # progress comes from the recorder
    )
    task = progress.add_task(scenario.name, total=scenario.time.n_steps, completed=resumed_from, simtime="", rate="-")
    first_step: list[tuple[float, int]] = []  # (when, steps) at the first progress: start-up is not stepping

    shown: set[str] = set()

    def show_warnings() -> None:
        for warning in run_warnings(plan.run_dir):
            if warning not in shown:
                shown.add(warning)
                console.print(f"[bold yellow]warning[/]: {warning}", highlight=False, soft_wrap=True)

    def on_progress(p) -> None:
        if p.steps_done > resumed_from and not first_step:
            first_step.append((time.monotonic(), p.steps_done))
            show_warnings()  # start-up checks of the federates (e.g. nodes at 0 pu) are done by now
        rate = "-"
        if first_step and p.steps_done > first_step[0][1]:
            rate = f"{(p.steps_done - first_step[0][1]) / max(time.monotonic() - first_step[0][0], 1e-9):.1f}"
        progress.update(task, completed=p.steps_done, simtime=str(start + step * p.steps_done), rate=rate)

    # SIGTERM (kill, scancel, a Slurm time limit) stops the run as Ctrl-C does: the federates are
    # stopped and the results file closed with the steps so far, not left to die with us.
    previous = {sig: signal.signal(sig, _stop_run) for sig in (signal.SIGINT, signal.SIGTERM)}
    with progress:
        try:
            outcome = execute_run(plan, on_progress)
        except RunFailed as exc:
            progress.stop()
            show_warnings()  # before the error, which stays last but for the resume hint
            console.print(f"[bold red]error[/]: {exc}", highlight=False, soft_wrap=True)
            _hint_resume(plan.config.output)
            return EXIT_RUN_FAILED
        except KeyboardInterrupt as exc:
            progress.stop()
            show_warnings()
            how = f"stopped by {exc.args[0]}" if exc.args else "the run was stopped"
            console.print(f"[bold red]interrupted[/]: {how}; {_kept(plan.config.output)}", highlight=False, soft_wrap=True)
            _hint_resume(plan.config.output)
            return 130
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _stopping.clear()
    show_warnings()  # a completed run's (none new after a failure: shown above)
    if not args.quiet and outcome.summary is None:
        console.print(f"[bold green]Part complete[/]: {', '.join(plan.commands)} finished in {outcome.wall_seconds:.1f} s; "
                      f"the recorder's host writes {outcome.output}", highlight=False)
    elif not args.quiet:
        if resumed_from:
            console.print(f"resumed from the checkpoint after step {resumed_from - 1}")
        _print_summary(outcome)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tandem.compare import NOTES, compare

    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    overrides = {key: value for key, value in (("time.duration", args.duration), ("time.step", args.step)) if value}
    name = Path(args.scenario).stem if args.scenario else "default"
    out_dir = Path(args.output or Path("runs/output") / f"compare_{name}_{time.strftime('%Y%m%d-%H%M%S')}")

    def on_run(scheme: str, output: Path) -> None:
        if not args.quiet:
            console.print(f"running [bold]{scheme}[/] -> {output}")

    frame, errors = compare(args.scenario, schemes, out_dir, overrides, on_run)
    pd.set_option("display.width", 200)
    print(frame.to_string(float_format=lambda v: f"{v:,.3f}"))
    for column, note in NOTES.items():
        print(f"  {column}: {note}")
    print(f"table: {out_dir / 'compare.csv'}")
    for scheme, message in errors.items():
        console.print(f"[bold red]error[/] ({scheme}): {message}", highlight=False, soft_wrap=True)
    return EXIT_RUN_FAILED if errors else 0


def _kept(output: str) -> str:
    """What an interrupted run left: say that results were kept only if a readable file holds them."""
    import h5py

    try:
        with h5py.File(output, "r", locking=False):
            return "partial results were kept"
    except (OSError, ValueError):
        pass
    if Path(output).exists():
        return f"{output} was left unreadable (stopped before its first write)"
    return "no results file was written (stopped before the recorder created it)"


def _hint_resume(output: str) -> None:
    from results.checkpoint import latest_checkpoint_step

    step = latest_checkpoint_step(output)
    if step is not None:
        console.print(f"the last checkpoint is after step {step}; continue with: tandem run --resume {output}",
                      highlight=False, soft_wrap=True)


def cmd_inspect(args: argparse.Namespace) -> int:
    from results.dataset import describe

    try:
        print(describe(args.results))
    except (OSError, KeyError) as exc:
        console.print(f"[bold red]error[/]: cannot read {args.results}: {exc}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    return 0


def main(argv: list[str] | None = None) -> int:
    global console
    # Made anew for this process's stderr: a `tandem run` forked by a sweep inherits the console
    # made for the sweep's terminal, and would write its colours into the case's log.
    console = _stderr_console()
    parser = argparse.ArgumentParser(prog="tandem", description="Tandem: T&D co-simulation with pandapower, OpenDSS and HELICS")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(commands)
    inspect = commands.add_parser(
        "inspect", help="describe a results file",
        description="Scenario, package versions, completion state, steps, and every dataset with its size and units.",
    )
    inspect.add_argument("results", help="a run's HDF5 file")
    report = commands.add_parser(
        "report", help="HTML report and KPI table of one or more runs",
        description=(
            "Write a self-contained HTML report (plots embedded) and print the KPI table. With several runs "
            "they are compared side by side and their time series overlaid."
        ),
    )
    compare_cmd = commands.add_parser(
        "compare", help="run a study once per coordination scheme and compare KPIs",
        description="Run SCENARIO once per scheme (same profiles and seeds), print the KPI table and save it as compare.csv.",
    )
    compare_cmd.add_argument("scenario", nargs="?", help="scenario file (default: the built-in study)")
    compare_cmd.add_argument("--schemes", default="none,local,tso_managed,hybrid,dso_managed,admm", help="comma-separated coordination schemes (default: none,local,tso_managed,hybrid,dso_managed,admm)")
    compare_cmd.add_argument("-o", "--output", help="folder for the runs and compare.csv (default: runs/output/compare_<name>_<time>)")
    compare_cmd.add_argument("--duration", metavar="D", help="override time.duration, with units")
    compare_cmd.add_argument("--step", metavar="S", help="override time.step, with units")
    compare_cmd.add_argument("-q", "--quiet", action="store_true", help="only the table and errors")
    report.add_argument("results", nargs="+", help="HDF5 files of runs")
    report.add_argument("-o", "--output", help="HTML file to write (default: beside the first run, .html)")
    from tandem.sweep_cli import add_sweep_parser

    add_sweep_parser(commands)
    from tandem.flex import add_parser as add_flex_parser

    add_flex_parser(commands)
    from tandem.market import add_parser as add_market_parser

    add_market_parser(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            return cmd_inspect(args)
        if args.command == "report":
            from tandem.report import main_report

            return main_report(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "sweep":
            from tandem.sweep_cli import cmd_sweep

            return cmd_sweep(args)
        if args.command == "flex":
            from tandem.flex import main_flex

            return main_flex(args)
        if args.command == "market":
            from tandem.market import main_market

            return main_market(args)
    except ScenarioError as exc:
        console.print(f"[bold red]error[/]: {exc}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]: stopped by the user")  # no run of ours wrote anything yet
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
