"""`tandem market`: the flexibility market of one gate of a scenario, cleared by each market
model side by side, and the common market's cost split between the system operators.

The gate's market is built from what the coordinator knows at that time (networks, forecasts
over its look-ahead, DER fleets: `coordination.market.from_study`); each model clears it
(`coordination.market.clearing`). Printed per model: procurement cost, what each SO paid,
what the market's own grid model still sees violated, the DSOs' import change, and the
clearing time; with `--allocate`, each allocation's shares and whether it lies in the Core.
`-o FILE.csv` writes the table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scenario.schema import ScenarioError, load_scenario

MODEL_CHOICES = ("common", "disjoint", "fragmented", "multilevel")


def add_parser(commands) -> None:
    market = commands.add_parser(
        "market", help="clear the flexibility market models at one gate of a scenario",
        description=(
            "Build the TSO-DSO flexibility market of the scenario at one time over its coordinator's look-ahead "
            "(bids from its generators and DERs, needs from its grids' baseline on the forecasts) and clear it "
            "with each market model; print cost, payments by system operator, what stays violated, and with "
            "--allocate the common market's cost split (Shapley, proportional, Lagrangian) with a Core check."
        ),
    )
    market.add_argument("scenario", help="scenario file (.yaml, .toml or .json)")
    market.add_argument("--time", required=True, metavar="T",
                        help="the gate: a time within the run (ISO 8601) or an offset from its start with units (e.g. 12h)")
    market.add_argument("--models", default=",".join(MODEL_CHOICES), metavar="M,...",
                        help=f"market models to clear, comma-separated (default all: {', '.join(MODEL_CHOICES)})")
    market.add_argument("--pricing", default="unpriced,optimal", metavar="P,...",
                        help="interface pricing of the sequential models: unpriced, optimal or both (default both)")
    market.add_argument("--safety", default="prequalification", metavar="S,...",
                        help="Layer-2 safety of multilevel: none, corrective, prequalification, rsf, or several (default prequalification)")
    market.add_argument("--allocate", action="store_true", help="split the common market's cost between the SOs")
    market.add_argument("-o", "--output", help="CSV file for the table")


def _split(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise ScenarioError(f"unknown {what} {bad[0] if bad else text!r}; one or more of {', '.join(allowed)}")
    return items


def main_market(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from coordination.market import clearing as mc
    from coordination.market.allocation import allocate
    from coordination.market.from_study import market_case
    from coordination.receding_horizon import RecedingHorizon
    from tandem.flex import step_of

    models = _split(args.models, MODEL_CHOICES, "market model")
    pricings = _split(args.pricing, ("unpriced", "optimal"), "interface pricing")
    safeties = _split(args.safety, mc.SAFETY, "Layer-2 safety")
    scenario = load_scenario(args.scenario)
    if scenario.coordination.scheme == "none":
        raise ScenarioError("the market's look-ahead is the coordinator's: give the scenario a coordination.scheme "
                            "(its interval and horizon set the market's periods)")
    k = step_of(args.time, scenario)
    console = Console(width=max(Console().width, 120))  # the tables' width, also into a file or pipe
    rh = RecedingHorizon(scenario, build_problem=False)
    if not 1 <= k + 1 < rh.n_steps:
        raise ScenarioError(f"--time {args.time!r}: no look-ahead left after it")
    case = market_case(rh, k + 1, rh.initial_measurements())
    base = mc.violations(case, np.zeros((len(case.bids), case.periods)))
    console.print(f"market at step {k}: {len(case.bids)} bids, {len(case.dsos)} DSOs, {case.periods} periods; "
                  f"baseline line overload {base['tso']:.3g} MWh, squared-voltage violation "
                  f"{sum(v for d, v in base.items() if d in case.dsos):.3g} pu²·h", highlight=False)
    runs = []
    for model in models:
        for pricing in (pricings if model in ("fragmented", "multilevel") else ["unpriced"]):
            for safety in (safeties if model == "multilevel" else [None]):
                started = time.perf_counter()
                out = mc.clear(case, model, pricing, safety or "prequalification")
                runs.append((model, pricing, safety, out, time.perf_counter() - started))
    table = Table(title="flexibility market models")
    columns = ["market", "cost", "TSO paid", "DSOs paid", "line MWh", "voltage pu²h", "|Δimport| MWh", "s"]
    for c in columns:
        table.add_column(c, justify="left" if c == "market" else "right")
    rows = []
    for model, pricing, safety, out, seconds in runs:
        paid = out.cost_by_so()
        dsos_paid = sum(v for so, v in paid.items() if so in case.dsos)
        change = sum(float(np.abs(v) @ case.hours) for v in out.imports_mw.values())
        label = " ".join(x for x in (model, pricing if model in ("fragmented", "multilevel") else "", safety or "") if x)
        joint = model == "common"  # one market for all: who pays is the allocation's question (--allocate)
        row = [label, out.cost, "joint" if joint else out.cost - dsos_paid, "joint" if joint else dsos_paid, out.violations["tso"],
               sum(v for d, v in out.violations.items() if d in case.dsos), change, seconds]
        rows.append(row)
        table.add_row(*[x if isinstance(x, str) else f"{x:,.2f}" for x in row])
    console.print(table)
    if args.allocate:
        game = mc.CommonGame(case)
        common = mc.common(case)
        shares = allocate(case.sos, game, *mc.lagrangian_inputs(common, case))
        split = Table(title=f"the common market's cost ({common.cost + common.penalty:,.2f} with penalties) split")
        split.add_column("SO")
        for method in shares:
            split.add_column(method, justify="right")
        for so in case.sos:
            split.add_row(so, *[f"{a.shares[so]:,.2f}" for a in shares.values()])
        split.add_row("in the Core", *["yes" if a.in_core else ("no" if a.in_core is False else "not checked") for a in shares.values()])
        console.print(split)
    if args.output:
        import csv

        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        console.print(f"wrote {path}", highlight=False)
    return 0
