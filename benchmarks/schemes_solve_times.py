"""Solve times of the coordination schemes against the centralized problem, measured in one run.

The case: the IEEE 118-bus system with FEEDERS feeders of the built-in default study (IEEE 13-
and 123-node feeders taken in turn, each with 10 PV systems at 50 % and 4 batteries at 20 % of its
peak load, ten copies behind its bus), a look-ahead of H hourly periods. Every scheme is built,
solved (cold: HiGHS models built on the way), then re-solved twice with the horizon moved on by
one hour (warm), as a coordinator does every K steps. Printed per scheme: build and solve
seconds, the warm re-solve's ratio to the centralized warm re-solve, the objective's gap to the
centralized optimum, values exchanged and iterations. For admm also the warm re-solve with the
DSO problems in this process against worker processes.

    python benchmarks/schemes_solve_times.py [FEEDERS] [H]        (defaults 4 and 12)
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _interleaved(feeders: list) -> list:
    """IEEE 13 and IEEE 123 feeders taken in turn (the default study lists four of each)."""
    small = [f for f in feeders if f.model == "ieee13"]
    large = [f for f in feeders if f.model != "ieee13"]
    out = []
    for pair in zip(small, large):
        out.extend(pair)
    return out


def case(n_feeders: int, horizon: int):
    import pandapower.networks as pn

    from coordination.centralized import FeederSetup
    from coordination.ders import ders_from_fleet
    from coordination.network_data import feeder_data, transmission_data
    from grid.feeder import build_feeder
    from scenario.schema import load_scenario

    scenario = load_scenario(None, overrides={"time.step": "1h", "time.duration": "2d"})
    specs = [f.model_copy(update={"pv": f.pv.model_copy(update={"penetration": 0.5, "count": 10}),
                                  "battery": f.battery.model_copy(update={"penetration": 0.2, "count": 4})})
             for f in _interleaved(scenario.feeders)[:n_feeders]]
    models = {}
    setups = {}
    for spec in specs:
        model = build_feeder(spec, scenario)
        model.run(1.0 + 0j, 8)
        models[spec.label] = model
        setups[spec.label] = FeederSetup(feeder_data(model), bus=int(spec.bus), multiplier=10.0,
                                         ders=ders_from_fleet(model.fleet))

    def data(k: int) -> dict:
        window = slice(k, k + horizon)
        return {
            "load_levels": {n: m.load_levels[:, window] for n, m in models.items()},
            "pv_available_kw": {n: {u.name: u.pmpp_kw * m.fleet.irradiance_kw_m2[window] for u in m.fleet.pv}
                                for n, m in models.items()},
            "battery_soc": {n: {u.name: u.soc for u in m.fleet.batteries} for n, m in models.items()},
            "head_voltage": {n: 1.0 for n in models},
        }

    return transmission_data(pn.case118()), setups, data


def main() -> None:
    from coordination.schemes import SCHEMES, SchemeOptions

    n_feeders = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    horizon = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    transmission, setups, data = case(n_feeders, horizon)
    options = SchemeOptions(horizon=horizon, battery_binaries="relaxed")
    print(f"case118, {n_feeders} feeders ({sum(len(s.data.nodes) for s in setups.values())} feeder nodes, "
          f"{sum(len(s.ders['pv']) + len(s.ders['batteries']) for s in setups.values())} DERs), {horizon} hourly periods")
    print(f"{'scheme':12s} {'build s':>8s} {'cold s':>8s} {'warm s':>8s} {'warm/central':>12s} {'gap %':>8s} "
          f"{'values':>7s} {'iter':>5s}")
    central = {}
    for name in ("tso_managed", "hybrid", "dso_managed", "dso_first", "admm"):
        start = time.perf_counter()
        problem = SCHEMES[name](transmission, setups, options)
        build = time.perf_counter() - start
        problem.update(**data(8))
        start = time.perf_counter()
        problem.solve()
        cold_s = time.perf_counter() - start
        warm_s = []
        for k in (9, 10):
            problem.update(**data(k))
            start = time.perf_counter()
            warm = problem.solve()
            warm_s.append(time.perf_counter() - start)
        if name == "tso_managed":
            central = {"warm": np.mean(warm_s), "objective": warm.objective}
        gap = 100.0 * (warm.objective - central["objective"]) / abs(central["objective"])
        print(f"{name:12s} {build:8.2f} {cold_s:8.2f} {np.mean(warm_s):8.2f} {np.mean(warm_s) / central['warm']:12.1f} "
              f"{gap:8.3f} {warm.exchange.n_values:7d} {warm.exchange.iterations:5d}", flush=True)
        if name == "admm":
            problem.close()
            serial = SCHEMES[name](transmission, setups, SchemeOptions(horizon=horizon, battery_binaries="relaxed",
                                                                      dso_processes=0, admm_warm_start=False))
            parallel = SCHEMES[name](transmission, setups, SchemeOptions(horizon=horizon, battery_binaries="relaxed",
                                                                        admm_warm_start=False))
            times = {}
            for label, p in (("in this process", serial), ("worker processes", parallel)):
                p.update(**data(8))
                p.solve()
                p.update(**data(9))
                start = time.perf_counter()
                out = p.solve()
                times[label] = (time.perf_counter() - start, out.exchange.iterations)
                p.close()
            (s_t, s_i), (p_t, p_i) = times["in this process"], times["worker processes"]
            print(f"admm cold-started re-solve, DSO problems in this process: {s_t:.2f} s ({s_i} iterations); "
                  f"in {parallel.pool.processes} worker processes: {p_t:.2f} s ({p_i} iterations); "
                  f"ratio {s_t / p_t:.2f}")
        elif hasattr(problem, "close"):
            problem.close()


if __name__ == "__main__":
    main()
