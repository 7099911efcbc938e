"""How often the batteries' relax-and-fix rounds run (issue #15 item 7).

Receding-horizon runs offline (no federation), one plan per coordination interval, each
battery's SOC advanced by its plan's first period (the feeders following the set-points
exactly), twice in one run: with each solve starting from free directions (as before), and
with the directions the last solve had to fix carried into the next
(`solver.BatteryDirections.advance`, the default). Printed per variant: plans, plans whose
first LP still had a battery charging and discharging at once (a second LP), rounds in all,
battery-periods doing both in the final plans (must be 0), the summed objective and times.

    python benchmarks/battery_rounds.py [--case pv_centralized|benchmark] [--duration 24h] [--feeders 4 --periods 24]

Measured on this 2-core machine (shared with other sessions, load average 6-9: times are
indicative, counts and objectives are not affected):

| case | plans | second LP, free directions | second LP, carried | objective carried / free - 1 | HiGHS s free / carried |
|---|---|---|---|---|---|
| pv_centralized, 1 day from 08:00 (2 feeders, 12 periods) | 96 | 0 | 0 | 0 (identical plans) | 31.6 / 56.4 (load) |
| benchmark 4 x 24 (IEEE 118 + 4 IEEE 123, from midnight) | 12 | 12 (12 rounds) | 1 (the first plan; 165 battery-periods carried in 11 plans) | -7.6e-6 | 228 / 58 |

On pv_centralized the LP relaxation is exact by itself: curtailing PV (5 per MWh) is a cheaper
sink than a battery's losses (about 19.5 x the throughput price of 1 per MWh), and at night
nothing needs a sink. On the benchmark the soft voltage limits make absorbing P worth
thousands per MWh at some batteries at night (the SOC's dual was about 4,000 per MWh at one of
them), with no PV to curtail; the same battery-periods burn plan after plan, which is what
carrying the fixed directions exploits. No plan of either run charged and discharged a
battery in the same period. (On pv_centralized nothing is ever fixed, so nothing is carried:
the two variants make the same plans; their time difference is the machine's load.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def receding_horizon(args):
    from coordination.receding_horizon import RecedingHorizon

    if args.case == "benchmark":  # IEEE 118 + N IEEE 123 of `coordinator_resolve.py` (3 days: limit with --plans)
        import sys

        sys.path.insert(0, str(ROOT / "benchmarks"))
        from coordinator_resolve import scenario as bench

        scenario = bench(args.feeders, args.periods)
    else:
        from scenario.schema import load_scenario
        from tandem.study import resolve_scenario

        scenario, _ = resolve_scenario(load_scenario(ROOT / "runs" / "pv_centralized.yaml", {"time.duration": args.duration}))
    return RecedingHorizon(scenario)


def run(rh, carry: bool, plans: int | None) -> dict:
    from coordination.receding_horizon import Measurements

    if not carry:
        rh.problem.advance = lambda periods: None  # every solve starts with free directions
    soc = {n: np.array([u.soc for u in m.fleet.batteries]) for n, m in rh.models.items()}
    out = {"plans": 0, "second_lp": 0, "rounds": 0, "carried": 0, "objective": 0.0, "plan_s": 0.0, "highs_s": 0.0,
           "simultaneous": 0}
    steps = list(range(1, rh.n_steps - 1, rh.K))[:plans]
    for step in steps:
        measured = Measurements(dict(soc), {n: 1.0 for n in rh.labels},
                                node_vm={n: m.node_voltages() for n, m in rh.models.items()})
        started = time.perf_counter()
        plan = rh.plan(step, measured)
        out["plan_s"] += time.perf_counter() - started
        assert not plan.failed, plan.result.status
        result = plan.result
        out["plans"] += 1
        out["rounds"] += result.direction_rounds
        out["second_lp"] += result.direction_rounds > 0
        out["carried"] += rh.problem.directions.carried
        out["objective"] += result.objective
        out["highs_s"] += result.highs_s
        for name, model in rh.models.items():
            units = result.setpoints[name]
            soc[name] = np.array([units[u.name]["soc"][0] for u in model.fleet.batteries])
            out["simultaneous"] += sum(int(np.sum(np.minimum(units[u.name]["charge_kw"], units[u.name]["discharge_kw"]) > 1e-6))
                                       for u in model.fleet.batteries)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["pv_centralized", "benchmark"], default="pv_centralized")
    parser.add_argument("--duration", default="24h")
    parser.add_argument("--plans", type=int, default=None, help="stop after this many plans")
    parser.add_argument("--feeders", type=int, default=4)
    parser.add_argument("--periods", type=int, default=24)
    args = parser.parse_args()
    results = {}
    for carry in (False, True):
        rh = receding_horizon(args)
        out = results[carry] = run(rh, carry, args.plans)
        rh.close()
        print(f"{'carried directions' if carry else 'free directions   '}: {out['plans']} plans, {out['second_lp']} needed a "
              f"second LP ({out['rounds']} rounds; {out['carried']} battery-periods fixed from the plan before); "
              f"battery-periods charging and discharging at once in the plans: {out['simultaneous']}; "
              f"summed objective {out['objective']:.6f}; planning {out['plan_s']:.1f} s (HiGHS {out['highs_s']:.1f} s)",
              flush=True)
    free, carried = results[False]["objective"], results[True]["objective"]
    print(f"objective carried / free - 1 = {carried / free - 1:+.2e}; "
          f"HiGHS time carried / free = {results[True]['highs_s'] / results[False]['highs_s']:.2f}")


if __name__ == "__main__":
    main()
