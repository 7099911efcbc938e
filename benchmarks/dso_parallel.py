"""The DSO sub-problems in parallel worker processes against one after the other (issue #15 item 4).

The case of benchmarks/schemes_solve_times.py (IEEE 118, FEEDERS feeders of the default study
with PV and batteries, ten copies each, H hourly periods). For each scheme that decomposes
(hybrid, dso_managed, dso_first, admm) a warm re-solve is timed with the DSO problems in this
process (`dso_processes: 0`) and in 2 worker processes, in the same run; printed: both times and
their ratio (the speed-up on this machine).

What a larger node would give, from a model stated here and checked against the 2-worker
measurement: in-process, every call the scheme makes to its DSOs (one per round: a solve, an
ADMM iteration, a validation) is timed per feeder, d[r][f]. What does not run in the DSOs
(TSO, settlement, the scheme's own work) is s = T1 - sum over r, f of d[r][f]. With N workers,
each holding the feeders `coordination.agents.worker_groups` gives it, a round lasts as long as
its slowest worker: T(N) = s + sum over r of max over workers w of sum over f in w of d[r][f]
+ rounds x c. Printed: the model without c at 2 workers beside the 2-worker measurement (how
well it holds), c fitted from that difference, and T(N) for larger N.
The model assumes N free cores, solve times that do not change when several run at once
(memory bandwidth and caches are shared on a real node, so it is optimistic), and the same
iterations in every layout (true here: the workers solve the same problems).

    python benchmarks/dso_parallel.py [FEEDERS] [H]        (defaults 4 and 12)

Measured on this 2-core machine, 4 feeders (two IEEE 13, two IEEE 123) x 12 periods, while other
work kept the load average at 3.5 (so the parallel figures are conservative and the fitted "IPC"
holds contention too), seconds per warm re-solve:

| scheme | rounds | in-process | 2 workers | speed-up | model, 2 (no IPC) | fitted IPC per round | model, 4 |
|---|---|---|---|---|---|---|---|
| hybrid | 2 | 11.95 | 7.11 | 1.68x | 6.25 | 431 ms | 6.85 |
| dso_managed | 2 | 22.05 | 13.16 | 1.68x | 12.01 | 571 ms | 11.77 |
| dso_first | 2 | 3.28 | 1.45 | 2.27x | 1.71 | 0 | 1.54 |
| admm | 5 | 7.74 | 5.83 | 1.33x | 4.33 | 301 ms | 5.41 |

Two workers pay on every scheme. Four would add almost nothing on this case: the two IEEE 123
DSOs take most of each round and already sit on their own workers; the model's gain grows with
the number of feeders of similar size (one round lasts as long as the largest DSO).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.schemes_solve_times import case  # noqa: E402

SCHEMES = ("hybrid", "dso_managed", "dso_first", "admm")


def warm_resolve(problem, data) -> float:
    """Seconds of one warm re-solve after a cold one (the horizon moved on by one period)."""
    problem.update(**data(8))
    problem.solve()
    problem.update(**data(9))
    if hasattr(problem.pool, "rounds"):
        problem.pool.rounds.clear()
    start = time.perf_counter()
    problem.solve()
    return time.perf_counter() - start


def makespan(rounds: list[dict[str, float]], groups: list[list[str]]) -> float:
    """Seconds of the DSO rounds when each group runs on its own core."""
    return sum(max(sum(r.get(f, 0.0) for f in g) for g in groups) for r in rounds)


def main() -> None:
    from coordination.agents import worker_groups
    from coordination.schemes import SCHEMES as CLASSES
    from coordination.schemes import SchemeOptions

    n_feeders = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    horizon = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    transmission, setups, data = case(n_feeders, horizon)
    sizes = {name: len(s.data.nodes) for name, s in setups.items()}
    ns = sorted({n for n in (2, 4, 8, 16) if n <= n_feeders} | {n_feeders})
    print(f"case118, {n_feeders} feeders, {horizon} hourly periods; warm re-solve seconds")
    print(f"{'scheme':12s} {'rounds':>6s} {'1 (meas.)':>9s} {'2 (meas.)':>9s} {'speed-up':>8s} {'2 (model)':>9s} "
          f"{'IPC ms/round':>12s} " + " ".join(f"{f'{n} (model)':>10s}" for n in ns if n > 2))
    for name in SCHEMES:
        options = dict(horizon=horizon, battery_binaries="relaxed", admm_warm_start=False)
        serial = CLASSES[name](transmission, setups, SchemeOptions(dso_processes=0, **options))
        t1 = warm_resolve(serial, data)
        rounds = list(serial.pool.rounds)
        serial.close()
        parallel = CLASSES[name](transmission, setups, SchemeOptions(dso_processes=2, **options))
        t2 = warm_resolve(parallel, data)
        parallel.close()
        outside = t1 - sum(sum(r.values()) for r in rounds)
        model = {n: outside + makespan(rounds, worker_groups(sizes, n)) for n in ns}
        # What the model misses at 2 workers is put down to IPC and pickling, per round.
        per_round = max(0.0, (t2 - model[2]) / len(rounds))
        print(f"{name:12s} {len(rounds):6d} {t1:9.2f} {t2:9.2f} {t1 / t2:7.2f}x {model[2]:9.2f} {1e3 * per_round:12.1f} "
              + " ".join(f"{model[n] + per_round * len(rounds):10.2f}" for n in ns if n > 2), flush=True)


if __name__ == "__main__":
    main()
