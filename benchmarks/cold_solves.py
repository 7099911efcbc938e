"""Cold LP solves: HiGHS' interior point (ipx, with crossover) against the dual simplex (issue #15 item 6).

The joint T&D LP of `coordinator_resolve.py` (IEEE 118 + N IEEE 123, regulators at fixed
ratios), solved in one run with each `Options.cold_solver`:

- cold: the HiGHS model built anew and solved from no basis (a coordinator's first plan);
- warm: the next plan's data, re-solved from the basis the cold solve left (always the
  dual simplex: ipx's crossover must leave a basis as good as the simplex's own);
- after a tap: one regulator of one feeder a tap up (coefficients rewritten in place,
  HiGHS' factorisation dropped), the same plan solved again (`cold_solver` again).

Printed: HiGHS seconds of each (the LP only, no battery rounds) and the ratio ipm / simplex.

    python benchmarks/cold_solves.py [--feeders 4] [--periods 24]

Measured on this 2-core machine, shared with other sessions (load average 6-9: wall times
were 2-4x the CPU times, so the CPU seconds and their ratios are the figures to read):

| feeders x periods | columns | cold simplex / ipx (CPU s) | warm after it (simplex both) | after a tap, simplex / ipx | ipx / simplex |
|---|---|---|---|---|---|
| 4 x 24 | 160 k | 47.3 / 19.7 | 59.3 / 48.3 | 48.5 / 29.5 | cold 0.42, warm 0.81, tap 0.61 |
| 10 x 24 | 371 k | 239.4 / 111.1 | 178.0 / 217.9 | 149.2 / 111.6 | cold 0.46, warm 1.22, tap 0.75 |

(The warm re-solve after an ipx start was 19 % faster at 4 x 24 and 22 % slower at 10 x 24:
crossover's basis is a different vertex; both runs' warm times are from one re-solve each.)

Objectives agree to 1e-9 relative (same optimum). A cold solve plus the warm one after it:
ipx 68.0 against 106.6 CPU s at 4 x 24, 329.0 against 417.4 at 10 x 24. Hence `Options.cold_solver = "auto"`: ipx
with crossover for cold LPs from 50,000 columns on (`solver.IPM_MIN_COLUMNS`; the issue measured
ipx 58.5 s against cold dual simplex 104-109 s at 10 x 24 as well), the simplex below (small LPs
gain nothing, and the chained LPs of dso_managed picked another of several optima after a cold
ipx solve), and the dual simplex for every warm re-solve. With regulators held (the
benchmark's default) a tap changes no coefficient, so only the first plan is cold.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from coordinator_resolve import measured, scenario  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeders", type=int, default=4)
    parser.add_argument("--periods", type=int, default=24)
    args = parser.parse_args()

    from coordination.receding_horizon import RecedingHorizon

    scen = scenario(args.feeders, args.periods)
    # Regulators at fixed ratios: a tap changes coefficients (a held voltage would not).
    scen = scen.model_copy(update={"coordination": scen.coordination.model_copy(update={"regulators": "fixed_ratio"})})
    rh = RecedingHorizon(scen)
    problem, solver = rh.problem, rh.problem.solver
    print(f"{args.feeders} x {args.periods}: {problem.n_variables:,} variables, {problem.n_constraints:,} constraints",
          flush=True)
    name = rh.labels[0]
    times: dict[str, dict[str, float]] = {}
    cpu: dict[str, float] = {}

    def timed(key: str):
        """Solve; the process CPU seconds go to cpu[key] (wall times suffer from a busy machine)."""
        started = time.process_time()
        stats = solver.solve()
        cpu[key] = time.process_time() - started
        return stats

    for cold in ("simplex", "ipm"):
        solver.cold_solver = cold
        solver.rebuild()
        problem.update(**rh._update_data(1, measured(rh)))
        solver._build()  # (the HiGHS model's construction is not the solve)
        first = timed(f"{cold} cold")
        problem.update(**rh._update_data(2, measured(rh)))
        warm = timed(f"{cold} warm")
        # A tap up on the first regulator of the first feeder, then back (both rewrite coefficients).
        regs = rh.models[name].fleet.regulators
        now = np.array([_tap(rh, name, r) for r in regs], dtype=float)
        moved = now.copy()
        moved[0] += 1
        problem.update(ratios=rh._new_ratios({name: moved}))
        tap = timed(f"{cold} tap")
        problem.update(ratios=rh._new_ratios({name: now}))  # back (not timed: the next loop rebuilds)
        times[cold] = {k: cpu[f"{cold} {k}"] for k in ("cold", "warm", "tap")}
        print(f"{cold:8s}: cold {first.highs_s:7.2f} s wall, {times[cold]['cold']:7.2f} s CPU ({first.status}, objective "
              f"{first.objective:.6f}); warm after it {warm.highs_s:6.2f} s wall, {times[cold]['warm']:6.2f} s CPU "
              f"({warm.objective:.6f}); after a tap {tap.highs_s:7.2f} s wall, {times[cold]['tap']:7.2f} s CPU "
              f"({tap.status}, {tap.objective:.6f})", flush=True)
    ratio = {k: times["ipm"][k] / times["simplex"][k] for k in ("cold", "warm", "tap")}
    print("ipm / simplex (CPU seconds): " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))


def _tap(rh, name: str, regulator: str) -> int:
    dss = rh.models[name].dss
    dss.RegControls.Name(regulator)
    return int(dss.RegControls.TapNumber())


if __name__ == "__main__":
    main()
