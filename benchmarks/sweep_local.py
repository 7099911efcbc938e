"""Throughput of `tandem sweep --local 2` against running the same cases one after another.

    python benchmarks/sweep_local.py [--cases 8] [--parallel 2] [--duration 12h] [--keep DIR]

A sweep of 8 cases (IEEE 30 with an IEEE 123-node feeder carrying PV and an IEEE 13-node
feeder, 12 h at 5 min, loose coupling; PV penetration x seed) is expanded once. The baseline,
measured in the same run, is `tandem run` on each case's scenario file, one after another; then
`tandem sweep --local 2` runs the same cases in a fresh folder, and `--local 1` shows how much
of the gain comes from running two at a time and how much from the sweep's start-up (it imports
Python's modules once and forks every case's processes from itself, see federates/forked.py,
where each `tandem run` imports them anew). The order is A-B-C-C-B-A, so load from other work
that changes during the run weighs on all alike. It prints the mean wall times, cases per
minute, the ratios, and the 1.6x target.

Measured on a quiet 2-core machine: 12 h cases (3.8 s each alone) 2.54x (1.77x start-up, 1.44x
two at a time); 2-day cases (5.4 s each) 2.03x (1.36x, 1.49x). Before the launcher and the sweep forked their processes it was 1.30-1.37x: each case
spent 6 CPU seconds, most of them importing modules in every process.
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
    from results.store import RunFile

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

        def as_sweep(tag: str, parallel: int) -> float:
            started = time.perf_counter()
            proc = _tandem("sweep", str(work / "sweep.yaml"), "-o", str(work / tag), "--local", str(parallel))
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            complete.append(_complete(sorted((work / tag / "results").glob("*.h5"))))
            return wall

        # A-B-C-C-B-A: other work on the machine that rises or falls during the run weighs on all alike.
        complete: list[int] = []
        cpu: list[float] = []  # CPU seconds of every process of the one-after-another runs
        load = os.getloadavg()[0]
        try:
            sequential = [one_after_another("sequential1")]
            parallel = [as_sweep("parallel1", args.parallel)]
            serial = [as_sweep("serial1", 1), as_sweep("serial2", 1)]
            parallel.append(as_sweep("parallel2", args.parallel))
            sequential.append(one_after_another("sequential2"))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        n = len(cases)
        seq, ser, par = (sum(t) / len(t) for t in (sequential, serial, parallel))
        ratio = seq / par

        def line(label: str, mean: float, runs: list[float]) -> str:
            return (f"  {label:<36}: {mean:7.1f} s  {n / mean * 60:5.1f} cases/min  "
                    f"(runs: {', '.join(f'{t:.1f}' for t in runs)} s)")

        print(line(f"one after another (tandem run x {n})", seq, sequential))
        print(line("tandem sweep --local 1", ser, serial))
        print(line(f"tandem sweep --local {args.parallel}", par, parallel))
        print(f"  {'throughput ratio':<36}: {ratio:7.2f}x   (target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'})")
        print(f"    of which the sweep's start-up {seq / ser:.2f}x (--local 1 against tandem run), "
              f"{args.parallel} at a time {ser / par:.2f}x (--local {args.parallel} against --local 1)")
        print(f"  a `tandem run` case spends {sum(cpu) / (2 * n):.1f} CPU s in {seq / n:.1f} s "
              f"({sum(cpu) / sum(sequential):.2f} cores busy)")
        print(f"  complete results: {sum(complete)} of {6 * n}; load average {load:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end (other work on the machine lowers the ratio)")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
