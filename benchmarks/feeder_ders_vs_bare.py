"""DER overhead in the feeder federate: one IEEE 123 feeder with 100 DERs (60 PV, 40
batteries, Volt-VAR on) over 7 days at 1-minute steps inside the co-simulation,
against a bare OpenDSS solve of the same feeder measured in the same run.

The co-simulation's figure is the feeder's whole step as the feeder federate records
it: every load's own level, DER irradiance and dispatch, the solve with its controls,
and the readings the record needs. The bare figure is the same feeder (same DERs, same
Volt-VAR control, built by the same code) solved with only OpenDSS's global LoadMult
changing: what OpenDSS itself costs. A federate waits for the others between its steps,
and code that has just waited runs markedly slower (cold caches), so the bare solves are
timed paced the same way (like for like, the target's figure) and back to back (for
reference). Target (issue #3): under 3x. All figures come from this run.

The paced ratio depends on what else the machine runs: other processes cool the bare
loop's caches during its pauses too, while on an idle machine the bare solve stays warm
and the ratio is highest. Measured 7 d: at load average 7.5 on 2 cores 0.550 ms against
0.271 ms, 2.03x (the feeder code before the speed-up, right after: 0.773 ms against 0.257 ms,
3.01x); at load average 2.4, 0.523 ms against 0.188 ms, 2.78x. The code before had measured
4.3-4.7x on an idle machine. On a quiet machine (load average below 1 at the end), two runs
back to back: 0.496 / 0.515 ms against 0.192 / 0.184 ms paced, 2.59x / 2.79x (against
back-to-back solves 2.80x / 2.91x).

Issue #13 (DER kinds as controllers, declared readings), both trees back to back with
`--duration 1d` at load average ~1.2: feeder step median 1.709 ms before, 1.703 ms after (paced
bare solve 0.819 / 0.829 ms; ratio 2.09x / 2.05x). Short runs are dominated by warm-up, hence
the higher step times than the 7-day figures above.

    python benchmarks/feeder_ders_vs_bare.py [--duration 7d]
"""

from __future__ import annotations

import argparse
import os
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


def bare_solve_seconds(duration: str, pause: float = 0.0) -> float:
    """Median per-step time of the same feeder solved by OpenDSS alone: LoadMult + Solve,
    optionally pausing between steps as a federate does while it waits for the others
    (a process that has just waited runs the same code markedly slower: cold caches)."""
    from grid.feeder import build_feeder
    from scenario.schema import Scenario
    from timeseries.profiles import load_shape

    study = Scenario.model_validate(scenario(duration))
    model = build_feeder(study.feeders[0], study)
    dss = model.dss
    dss.PVsystems.First()
    for _ in model.fleet.pv:  # mid-day sun, so the inverter controls have work to do
        dss.PVsystems.Irradiance(0.6)
        dss.PVsystems.Next()
    levels = load_shape("residential", study.time.index())
    times = np.empty(len(levels))
    for i, level in enumerate(levels):
        if pause:
            time.sleep(pause)
        started = time.perf_counter()
        dss.Solution.LoadMult(float(level))
        dss.Solution.Solve()
        times[i] = time.perf_counter() - started
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="7d", help="simulated span (default 7d = 10080 steps)")
    args = parser.parse_args()
    from results.store import RunFile

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
            period = run.read("timing/transmission_power_flow_s") + run.read("timing/transmission_wait_s")
            n_ders = len(run.read("devices/ieee123/pv")) + len(run.read("devices/ieee123/battery"))
    per_step = float(np.median(feeder))
    idle = max(float(np.median(period)) - per_step, 0.0)  # what the feeder process waits per step
    bare_paced = bare_solve_seconds(args.duration, pause=idle)
    bare_tight = bare_solve_seconds(args.duration)
    ratio = per_step / bare_paced
    print(f"IEEE 123 with {n_ders} DERs, {args.duration} at 1 min = {n} steps, co-simulation wall {wall:.1f} s")
    print(f"  feeder step in the co-simulation (median)   : {per_step * 1e3:7.3f} ms   (waits {idle * 1e3:.1f} ms per step for the others)")
    print(f"  bare OpenDSS solve, paced like the federate : {bare_paced * 1e3:7.3f} ms   (same DERs and Volt-VAR, LoadMult + Solve)")
    print(f"  bare OpenDSS solve, back to back            : {bare_tight * 1e3:7.3f} ms")
    print(f"  ratio (like for like, paced)                : {ratio:7.2f}x   (target < {TARGET_RATIO}x: {'met' if ratio < TARGET_RATIO else 'NOT met'})")
    print(f"  ratio against back-to-back solves           : {per_step / bare_tight:7.2f}x")
    print(f"  feeder step mean {feeder.mean() * 1e3:.3f} ms, 99th percentile {np.percentile(feeder, 99) * 1e3:.3f} ms")
    # Other processes evict the bare loop's caches during its pauses too, as the other federates
    # do the feeder's: the paced ratio is highest on an otherwise idle machine.
    print(f"  machine load average (1 min) at the end     : {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
