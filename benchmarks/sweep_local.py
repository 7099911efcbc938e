"""Throughput of `tandem sweep --local 2` against running the same cases one after another.

    python benchmarks/sweep_local.py [--cases 8] [--parallel 2] [--duration 12h] [--keep DIR]

A sweep of 8 cases (IEEE 30 with an IEEE 123-node feeder carrying PV and an IEEE 13-node
feeder, 12 h at 5 min, loose coupling; PV penetration x seed) is expanded once. The baseline,
measured in the same run, is `tandem run` on each case's scenario file, one after another; then
`tandem sweep --local 2` runs the same case files in a fresh folder. It prints both wall
times, cases per minute, the ratio, and the 1.6x target (2 cores: each case is a federation
of several processes in lockstep, so one case alone leaves part of the machine idle).
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
    parser.add_argument("--cases", type=int, default=8, choices=[2, 4, 8, 16])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--duration", default="12h", help="simulated span of each case, with units")
    parser.add_argument("--keep", help="write the sweep here and keep it (default: a temporary folder)")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sweep_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = {**BASE, "time": {**BASE["time"], "duration": args.duration}}
        (work / "base.yaml").write_text(yaml.safe_dump(base))
        penetrations = [0.0, 0.3, 0.6, 0.9][: max(1, args.cases // 2)]
        sweep = {"name": "bench", "base": "base.yaml",
                 "grid": {"feeders.0.pv.penetration": penetrations, "feeders.0.seed": [1, 2][: args.cases // len(penetrations)]}}
        (work / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))

        expand = _tandem("sweep", str(work / "sweep.yaml"), "-o", str(work / "parallel"))
        if expand.returncode != 0:
            print(expand.stderr, file=sys.stderr)
            return 2
        cases = sorted((work / "parallel" / "cases").glob("*.yaml"))
        print(f"{len(cases)} cases: {base['transmission']['network']} + IEEE 123 (PV) + IEEE 13, "
              f"{args.duration} at 5 min, loose coupling; {os.cpu_count()} cores")

        sequential_out = work / "sequential"
        sequential_out.mkdir(exist_ok=True)
        started = time.perf_counter()
        for case in cases:
            proc = _tandem("run", str(case), "-o", str(sequential_out / f"{case.stem}.h5"), "-q")
            if proc.returncode != 0:
                print(f"{case.stem} failed: {proc.stderr.strip()}", file=sys.stderr)
                return 1
        sequential = time.perf_counter() - started

        started = time.perf_counter()
        proc = _tandem("sweep", str(work / "sweep.yaml"), "-o", str(work / "parallel"), "--local", str(args.parallel))
        parallel = time.perf_counter() - started
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1

        n = len(cases)
        done = (_complete(sorted(sequential_out.glob("*.h5"))), _complete(sorted((work / "parallel" / "results").glob("*.h5"))))
        ratio = sequential / parallel
        print(f"  one after another (tandem run x {n}) : {sequential:7.1f} s  {n / sequential * 60:5.1f} cases/min  ({done[0]} complete)")
        print(f"  tandem sweep --local {args.parallel:<2}            : {parallel:7.1f} s  {n / parallel * 60:5.1f} cases/min  ({done[1]} complete)")
        print(f"  throughput ratio                    : {ratio:7.2f}x   (target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'})")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
