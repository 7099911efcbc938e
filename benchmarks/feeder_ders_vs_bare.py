"""DER overhead in the feeder federate: one IEEE 123 feeder with 100 DERs (60 PV, 40
batteries, Volt-VAR on) over 7 days at 1-minute steps inside the co-simulation,
against a bare OpenDSS solve of the same feeder measured in the same run.

The co-simulation's figure is the feeder's whole step as the feeder federate records
it: every load's own level, DER irradiance and dispatch, the solve with its controls,
and the readings the record needs. The bare figure is the same feeder (same DERs, same
Volt-VAR control, built by the same code) solved in a plain loop with only OpenDSS's
global LoadMult changing, the same number of steps: what OpenDSS itself costs. Target
(issue #3): under 3x. Both come from this run; the machine is noisy, so compare ratios.

    python benchmarks/feeder_ders_vs_bare.py [--duration 7d]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 3.0


def scenario(duration: str) -> dict:
    return {
        "name": "ders_benchmark",
        "transmission": {"network": "case9"},
        "feeders": [{
            "name": "ieee123", "model": "ieee123", "bus": 4, "multiplier": 10, "bus_load": "add",
            "pv": {"penetration": 0.5, "count": 60}, "battery": {"penetration": 0.2, "count": 40},
            "controls": {"volt_var": True}, "seed": 1,
        }],
        "time": {"start": "2024-07-01T00:00:00", "duration": duration, "step": "1min"},
    }


def bare_solve_seconds(duration: str) -> float:
    """Per-step time of the same feeder solved by OpenDSS alone: LoadMult + Solve."""
    from tandem.grid.feeder import build_feeder
    from tandem.scenario import Scenario
    from timeseries.profiles import load_shape

    study = Scenario.model_validate(scenario(duration))
    model = build_feeder(study.feeders[0], study)
    dss = model.dss
    dss.PVsystems.First()
    for _ in model.fleet.pv:  # mid-day sun, so the inverter controls have work to do
        dss.PVsystems.Irradiance(0.6)
        dss.PVsystems.Next()
    levels = load_shape("residential", study.time.index())
    started = time.perf_counter()
    for level in levels:
        dss.Solution.LoadMult(float(level))
        dss.Solution.Solve()
    return (time.perf_counter() - started) / len(levels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="7d", help="simulated span (default 7d = 10080 steps)")
    args = parser.parse_args()
    from timeseries.results import RunFile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.yaml"
        path.write_text(yaml.safe_dump(scenario(args.duration)))
        output = Path(tmp) / "ders.h5"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tandem.cli", "run", str(path), "-q", "-o", str(output)],
                       check=True, cwd=ROOT, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        with RunFile(output) as run:
            n = run.n_steps
            feeder = run.read("timing/feeders_opendss_s").sum(axis=1)
            n_ders = len(run.read("devices/ieee123/pv")) + len(run.read("devices/ieee123/battery"))
    bare = bare_solve_seconds(args.duration)
    per_step = float(np.median(feeder))
    ratio = per_step / bare
    print(f"IEEE 123 with {n_ders} DERs, {args.duration} at 1 min = {n} steps, co-simulation wall {wall:.1f} s")
    print(f"  feeder step in the co-simulation (median): {per_step * 1e3:7.3f} ms")
    print(f"  bare OpenDSS solve of the same feeder     : {bare * 1e3:7.3f} ms   (same DERs and Volt-VAR, LoadMult + Solve)")
    print(f"  ratio                                     : {ratio:7.2f}x   (target < {TARGET_RATIO}x: {'met' if ratio < TARGET_RATIO else 'NOT met'})")
    print(f"  feeder step mean {feeder.mean() * 1e3:.3f} ms, 99th percentile {np.percentile(feeder, 99) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
