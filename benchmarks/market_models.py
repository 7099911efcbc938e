"""Clearing the flexibility market models on a study of real size (issue #16).

IEEE 118 with PGLib-OPF line ratings and 10 IEEE 123 feeders carrying PV (50 %) and batteries
(20 %) (the case of `benchmarks/coordinator_resolve.py`), its market at noon over 24 hourly
periods (`coordination.market.from_study.market_case`). Printed, all measured in this run:
- each market model's clearing time (and pricing / safety variant), as a ratio to the common
  market's, with its procurement cost and what it leaves violated;
- the Shapley split of the common market among 10 SOs (the TSO and the first 9 DSOs) by
  enumerating its 1,023 coalitions on one persistent model (bounds changed, warm re-solves),
  against building and solving each coalition's model anew (timed on a sample, scaled).

    python benchmarks/market_models.py [--feeders 10] [--periods 24] [--cold-sample 20]

Measured on this 2-core machine while a week-long co-simulation shared it (load average 4-5:
times indicative, ratios more so): 264 bids (2 per generator with room, 1 per PV unit, 2 per
battery), 10 DSOs, 24 periods; baseline violations 2.07e4 MWh of line overload (PGLib ratings
against a copper-plate dispatch) and 4.9e3 pu²·h of squared-voltage violation (many on nodes no
bid moves: regulator outputs), so every model keeps paying penalties for what it cannot fix.

| model | procurement cost | DSO violation left (pu²·h) | clearing s | / common |
|---|---|---|---|---|
| common | 409,960 | 2,660 | 20.5 | 1.0 |
| disjoint | 393,313 | 4,240 | 17.4 | 0.8 |
| fragmented, unpriced | 410,083 | 2,660 | 21.8 | 1.1 |
| fragmented, priced | 409,960 | 2,660 | 39.5 | 1.9 |
| multilevel, unpriced: none / corrective / prequalification / RSF | 406,185 / 406,185 / 410,056 / 410,030 | 3,310 / 3,310 / 2,660 / 2,660 | 67.9 / 42.8 / 77.5 / 159.6 | 3.3 / 2.1 / 3.8 / 7.8 |
| multilevel, priced: none / corrective / prequalification / RSF | 406,173 / 406,173 / 409,960 / 409,960 | 3,310 / 3,310 / 2,660 / 2,660 | 43.0 / 57.2 / 65.7 / 91.5 | 2.1 / 2.8 / 3.2 / 4.5 |

Every model relieves all line overload. Disjoint and the unsafe multilevel variants pay less
because they leave more distribution violation (the market's penalties, not in the cost column,
make up the difference); priced, fragmented and multilevel with safe forwarding reach the common
market's cost exactly. Priced models include clearing the common market for its prices. Most of a
clearing is building the LP in Python (dense PTDF rows), not HiGHS. (RSF's steps were rebuilt per
step in this run; they now re-solve one model.)
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(feeders: int, periods: int):
    from benchmarks.coordinator_resolve import measured, scenario
    from coordination.market.from_study import market_case
    from coordination.receding_horizon import RecedingHorizon
    from scenario.schema import Scenario

    data = scenario(feeders, periods).model_dump(mode="json", exclude_unset=True)
    data["transmission"]["ratings"] = "pglib"
    data["time"].update(start="2024-07-01T12:00:00", step="1h")
    data["coordination"].update(interval="1h", horizon=f"{periods}h")
    sc = Scenario.model_validate(data)
    rh = RecedingHorizon(sc, build_problem=False)
    return market_case(rh, 1, measured(rh))


def sub_case(case, keep: list[str]):
    """The same market with only the DSOs in `keep` taking part (the others stay at their baseline)."""
    tso = replace(case.tso, boundary={d: b for d, b in case.tso.boundary.items() if d in keep})
    return replace(case, tso=tso, dsos={d: case.dsos[d] for d in keep}, bids=[b for b in case.bids if b.so in ("tso", *keep)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeders", type=int, default=10)
    parser.add_argument("--periods", type=int, default=24)
    parser.add_argument("--cold-sample", type=int, default=20)
    parser.add_argument("--skip-models", action="store_true", help="only the cost allocation")
    args = parser.parse_args()

    from coordination.market import clearing as mc
    from coordination.market.allocation import allocate
    from coordination.market.layer import Layer, LayerModel

    started = time.perf_counter()
    case = build(args.feeders, args.periods)
    print(f"market: {len(case.bids)} bids, {len(case.dsos)} DSOs, {case.periods} periods; built in {time.perf_counter() - started:.1f} s")
    base = mc.violations(case, np.zeros((len(case.bids), case.periods)))
    print(f"baseline violations: TSO {base['tso']:.3g} MWh, DSOs {sum(v for k, v in base.items() if k in case.dsos):.3g} pu2h")
    runs = [] if args.skip_models else [("common", "unpriced", None), ("disjoint", "unpriced", None), ("fragmented", "unpriced", None),
            ("fragmented", "optimal", None)] + [("multilevel", p, s) for p in ("unpriced", "optimal") for s in mc.SAFETY]
    times, rows = {}, []
    for model, pricing, safety in runs:
        t0 = time.perf_counter()
        out = mc.clear(case, model, pricing, safety or "prequalification")
        seconds = time.perf_counter() - t0
        times[(model, pricing, safety)] = seconds
        dsos = sum(v for k, v in out.violations.items() if k in case.dsos)
        rows.append((f"{model} {pricing}{' ' + safety if safety else ''}", out.cost, out.violations["tso"], dsos, seconds))
    common_s = times.get(("common", "unpriced", None), np.nan)
    print(f"{'model':36s} {'cost':>12s} {'TSO MWh':>9s} {'DSO pu2h':>9s} {'s':>8s} {'/ common':>9s}")
    for name, cost, tso, dsos, seconds in rows:
        print(f"{name:36s} {cost:12.2f} {tso:9.3g} {dsos:9.3g} {seconds:8.2f} {seconds / common_s:9.1f}")

    keep = list(case.dsos)[:9]
    small = sub_case(case, keep)
    game = mc.CommonGame(small)
    t0 = time.perf_counter()
    common = mc.common(small)
    shares = allocate(small.sos, game, *mc.lagrangian_inputs(common, small))
    warm = time.perf_counter() - t0
    n = len(small.sos)
    per_warm = warm / max(game.solves, 1)
    coalitions = [frozenset(c) for s in range(1, n + 1) for c in itertools.combinations(small.sos, s)]
    sample = random.Random(0).sample(coalitions, min(args.cold_sample, len(coalitions)))
    t0 = time.perf_counter()
    for coalition in sample:
        model = LayerModel(small, Layer("cold", "common", np.ones(len(small.bids), bool), mc._all(small), set(small.sos),
                                        set(small.dsos)))
        model.restrict(set(coalition))
        model.highs.run()
    per_cold = (time.perf_counter() - t0) / len(sample)
    print(f"Shapley over {n} SOs: {game.solves} coalition solves in {warm:.1f} s ({per_warm * 1000:.0f} ms each, persistent); "
          f"{game.rebuilds} rebuilt; cold build + solve {per_cold * 1000:.0f} ms each (sample of {len(sample)}): ratio {per_cold / per_warm:.1f}x")
    for method, allocation in shares.items():
        top = sorted(allocation.shares.items(), key=lambda kv: -abs(kv[1]))[:3]
        print(f"  {method:12s} in Core: {allocation.in_core}; largest shares " + ", ".join(f"{k} {v:.1f}" for k, v in top))


if __name__ == "__main__":
    main()
