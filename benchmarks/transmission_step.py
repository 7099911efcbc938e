"""Transmission step: results read from the solved voltages against pandapower's result tables.

    python benchmarks/transmission_step.py [SCENARIO] [--steps 300]

One `TransmissionModel.run` per step (recycled pandapower Newton-Raphson with the feeders'
powers) on the scenario's network and feeders (default: the built-in study, IEEE 118), measured in the same run two ways, alternating in
blocks so load from other work weighs on both: as Tandem runs it (pandapower stops at the
voltages, grid.pf_results computes the results) and with pandapower writing its full
result tables every step (the way before). Prints ms per step and the ratio.

Measured on a quiet machine: default study (IEEE 118, 8 feeders) 6.04 -> 2.09 ms per step
(2.88x); runs/small_iterative.yaml (IEEE 30, 3 feeders, 72 steps) 4.90 -> 1.83 ms (2.67x).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grid.transmission import TransmissionModel  # noqa: E402
from scenario.schema import load_scenario  # noqa: E402
from tandem.study import resolve_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", help="scenario file (default: the built-in study)")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()

    scenario, _ = resolve_scenario(load_scenario(args.scenario))
    network = scenario.transmission.network
    fast, tables = TransmissionModel(scenario), TransmissionModel(scenario)
    if fast._reader is None:
        print(f"{network}: results from the voltages disagree with pandapower's; nothing to compare")
        return 1
    tables._reader = None  # pandapower writes its result tables at every solve
    tables.net._options["only_v_results"] = False

    n_feeders = len(scenario.feeders)
    rng = np.random.default_rng(1)
    p = 1500 + 500 * rng.random((args.steps, n_feeders))
    q = 300 + 100 * rng.random((args.steps, n_feeders))
    n = min(args.steps, scenario.time.n_steps)
    seconds = {"fast": 0.0, "tables": 0.0}
    block = 20
    for start in range(0, n, block):
        for name, model in (("fast", fast), ("tables", tables)):
            began = time.perf_counter()
            for k in range(start, min(start + block, n)):
                model.run(k, p[k], q[k])
                model.bus_voltages(), model.branch_loading(), model.boundary_load(), model.generation_cost()
            seconds[name] += time.perf_counter() - began
    worst = float(np.max(np.abs(fast.bus_voltages()[0] - tables.bus_voltages()[0])))
    print(f"{network}, {n} steps, {n_feeders} feeders (last step's bus voltages differ by {worst:.1e} pu)")
    print(f"  results from the voltages : {seconds['fast'] / n * 1e3:6.2f} ms per step")
    print(f"  pandapower's result tables: {seconds['tables'] / n * 1e3:6.2f} ms per step")
    print(f"  ratio                     : {seconds['tables'] / seconds['fast']:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
