"""Throughput of `tandem sweep --local 2` against running the same cases one after another.

    python benchmarks/sweep_local.py [--cases 8] [--parallel 2] [--duration 12h] [--keep DIR]

A sweep of 8 cases (IEEE 30 with an IEEE 123-node feeder carrying PV and an IEEE 13-node
feeder, 12 h at 5 min, loose coupling; PV penetration x seed) is expanded once. The baseline,
measured in the same run, is `tandem run` on each case's scenario file, one after another; then
`tandem sweep --local 2` runs the same cases in a fresh folder. The order is A-B-B-A
(one after another, sweep, sweep, one after another), so load from other work that changes
during the run weighs on both. It prints the mean wall times, cases per minute, the ratio, and
the 1.6x target (2 cores: each case is a federation of several processes in lockstep, so one
case alone leaves part of the machine idle).

It also prints how many cores one case keeps busy on its own (CPU seconds of all its processes
over its wall time, from the one-after-another runs): N cases at a time on C cores cannot beat
min(N, C) / that figure. The federates of one case overlap (in loose coupling the feeders solve
while the transmission federate does; start-up imports run side by side), so a case alone
already uses ~1.35 cores here and the bound for 2 at a time is ~1.5x, below the target.
Measured on a quiet machine: 12 h cases 1.30x and 1.33x (bound 1.47x), 2-day cases 1.37x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.6

BASE = {
    "name": "bench",
    "transmission": {"network": "case30"},
    "feeders": [
        {"name": "f123", "model": "ieee123", "bus": 20, "load_profile": "residential", "pv": {"penetration": 0.3}},
        {"name": "f13", "model": "ieee13", "bus": 6, "load_profile": "commercial"},
    ],
    "time": {"start": "2024-06-01T00:00:00", "duration": "12h", "step": "5min"},
    "coupling": {"mode": "loose"},
}


def _env() -> dict[str, str]:
    """Subprocesses import this checkout's code, not whatever tandem is installed."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


def _tandem(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, stdin=subprocess.DEVNULL)


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes and all they started."""
    t = os.times()
    return t.children_user + t.children_system


def _complete(paths: list[Path]) -> int:
    sys.path.insert(0, str(ROOT))
    from timeseries.results import RunFile

    done = 0
    for path in paths:
        with RunFile(path) as run:
            done += bool(run.complete)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, choices=[2, 4, 8, 12, 16])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--duration", default="12h", help="simulated span of each case, with units")
    parser.add_argument("--keep", help="write the sweep here and keep it (default: a temporary folder)")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sweep_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = {**BASE, "time": {**BASE["time"], "duration": args.duration}}
        (work / "base.yaml").write_text(yaml.safe_dump(base))
        penetrations = [0.0, 0.3, 0.6, 0.9][: min(4, args.cases)]
        seeds = list(range(1, args.cases // len(penetrations) + 1))
        sweep = {"name": "bench", "base": "base.yaml",
                 "grid": {"feeders.0.pv.penetration": penetrations, "feeders.0.seed": seeds}}
        (work / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))

        expand = _tandem("sweep", str(work / "sweep.yaml"), "-o", str(work / "cases"))
        if expand.returncode != 0:
            print(expand.stderr, file=sys.stderr)
            return 2
        cases = sorted((work / "cases" / "cases").glob("*.yaml"))
        print(f"{len(cases)} cases: {base['transmission']['network']} + IEEE 123 (PV) + IEEE 13, "
              f"{args.duration} at 5 min, loose coupling; {os.cpu_count()} cores")

        def one_after_another(tag: str) -> float:
            folder = work / tag
            folder.mkdir()
            started, cpu_before = time.perf_counter(), _children_cpu()
            for case in cases:
                proc = _tandem("run", str(case), "-o", str(folder / f"{case.stem}.h5"), "-q")
                if proc.returncode != 0:
                    raise RuntimeError(f"{case.stem} failed: {proc.stderr.strip()}")
            wall = time.perf_counter() - started
            cpu.append(_children_cpu() - cpu_before)
            complete.append(_complete(sorted(folder.glob("*.h5"))))
            return wall

        def as_sweep(tag: str) -> float:
            started = time.perf_counter()
            proc = _tandem("sweep", str(work / "sweep.yaml"), "-o", str(work / tag), "--local", str(args.parallel))
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            complete.append(_complete(sorted((work / tag / "results").glob("*.h5"))))
            return wall

        # A-B-B-A: other work on the machine that rises or falls during the run weighs on both alike.
        complete: list[int] = []
        cpu: list[float] = []  # CPU seconds of every process of the one-after-another runs
        load = os.getloadavg()[0]
        try:
            sequential = [one_after_another("sequential1")]
            parallel = [as_sweep("parallel1"), as_sweep("parallel2")]
            sequential.append(one_after_another("sequential2"))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        n = len(cases)
        seq, par = sum(sequential) / 2, sum(parallel) / 2
        ratio = seq / par
        print(f"  one after another (tandem run x {n}) : {seq:7.1f} s  {n / seq * 60:5.1f} cases/min  "
              f"(runs: {', '.join(f'{t:.1f}' for t in sequential)} s)")
        print(f"  tandem sweep --local {args.parallel:<2}            : {par:7.1f} s  {n / par * 60:5.1f} cases/min  "
              f"(runs: {', '.join(f'{t:.1f}' for t in parallel)} s)")
        print(f"  throughput ratio                    : {ratio:7.2f}x   (target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'})")
        cores = sum(cpu) / sum(sequential)
        print(f"  one case alone keeps {cores:.2f} cores busy on average (CPU {sum(cpu) / (2 * n):.1f} s per "
              f"{seq / n:.1f} s case: its federates overlap), so {args.parallel} at a time on {os.cpu_count()} cores "
              f"can reach at most {min(args.parallel, os.cpu_count() or 1) / cores:.2f}x")
        print(f"  complete results: {sum(complete)} of {4 * n}; load average {load:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end (other work on the machine lowers the ratio)")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
