"""Coordination schemes side by side: the same study (same network, feeders, profiles and
seeds) run once per scheme, and one KPI table.

    tandem compare runs/pv_centralized.yaml --schemes none,local,centralized

Costs come in two kinds, shown apart: the economic cost of what happened (`total_cost`:
generation, curtailment and battery wear, less the value of the energy left in the batteries)
and `penalty_cost`, the limits the run did not keep priced as the coordinator prices them
(`coordination.objective.Penalties`: feeder voltages outside the band in pu^2 h, branch flow
above ratings, EV energy not delivered). With the centralized scheme among those compared, each
scheme's gap to it is given on both (`economic_gap_pct`, `penalty_gap`), and
`plan_penalty_share_pct` says how much of the coordinator's own planned objective was penalties.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from scenario.schema import Scenario, ScenarioError, load_scenario

# (column, unit, how it is computed from a run's KPIs)
COLUMNS: list[tuple[str, str]] = [
    ("total_cost", ""),
    ("tso_cost", ""),
    ("dso_cost", ""),
    ("storage_value", ""),
    ("penalty_cost", ""),
    ("economic_gap_pct", "%"),
    ("penalty_gap", ""),
    ("plan_penalty_share_pct", "%"),
    ("battery_energy_change_MWh", "MWh"),
    ("marginal_price_mean", "per MWh"),
    ("transmission_losses_MWh", "MWh"),
    ("distribution_losses_MWh", "MWh"),
    ("voltage_violation_node_h", "node h"),
    ("overload_branch_h", "branch h"),
    ("pv_curtailment_MWh", "MWh"),
    ("battery_throughput_MWh", "MWh"),
    ("interface_import_MWh", "MWh"),
    ("interface_export_MWh", "MWh"),
    ("interface_schedule_deviation_MWh", "MWh"),
    ("coordinator_solves", ""),
    ("coordinator_failed_solves", ""),
    ("solve_time_s", "s"),
    ("iterations_mean", ""),
    ("values_exchanged", ""),
]
NOTES = {
    "tso_cost": "generation cost of the realised operating points (the network's polynomial costs)",
    "dso_cost": "PV curtailment and battery wear at the scenario's coordination prices",
    "total_cost": "tso_cost + dso_cost - storage_value: the economic cost of what happened",
    "penalty_cost": "realised violations at the coordinator's penalty prices: voltage (pu^2 h outside the band) "
                    "x 100,000 + branch overload (MVAh) x 5,000 + EV energy owed at the end (MWh) x 1,000; "
                    "feeder branch overloads are not recorded, so not included",
    "economic_gap_pct": "(total_cost - the centralized scheme's) / the centralized scheme's, %",
    "penalty_gap": "penalty_cost - the centralized scheme's",
    "plan_penalty_share_pct": "penalty terms / all terms of the coordinator's planned objectives, summed over its solves",
    "storage_value": "energy the batteries end with above their start, at the run's mean marginal price (subtracted)",
    "marginal_price_mean": "the slack unit's marginal cost at each step's operating point, averaged over the steps",
    "interface_schedule_deviation_MWh": "coordinated schemes: realised interface power against each plan's schedule",
    "solve_time_s": "coordinator planning time, all solves",
    "iterations_mean": "distributed schemes: coordination iterations per solve",
    "values_exchanged": "numbers that crossed the TSO-DSO interface, all solves",
}


def scenarios_for(path: str | Path | None, schemes: list[str], overrides: dict[str, object]) -> dict[str, Scenario]:
    """One validated scenario per scheme (all checked before anything runs)."""
    if not schemes:
        raise ScenarioError("--schemes: give at least one scheme")
    duplicates = {s for s in schemes if schemes.count(s) > 1}
    if duplicates:
        raise ScenarioError(f"--schemes: {sorted(duplicates)[0]!r} is listed twice")
    return {scheme: load_scenario(path, {**overrides, "coordination.scheme": scheme}) for scheme in schemes}


def row(kpis: dict, scenario: Scenario) -> dict[str, float]:
    """The comparison's columns from one run's KPIs."""
    get = lambda key: float(kpis.get(key, math.nan)) if not isinstance(kpis.get(key), str) else math.nan  # noqa: E731
    c = scenario.coordination
    tso = get("generation_cost")
    dso = (c.curtailment_price * _zero_if_nan(get("pv_curtailment_MWh"))
           + c.battery_degradation_price * _zero_if_nan(get("battery_throughput_MWh")))
    # Energy left in the batteries was bought during the run; valued at what a MWh cost then,
    # so that a scheme is not counted dearer for ending fuller (none: no batteries).
    stored = 0.0 if "battery_energy_change_MWh" not in kpis else get("storage_value")
    out = {
        "total_cost": tso + dso - stored,
        "storage_value": stored,
        "penalty_cost": penalty_cost(kpis),
        "plan_penalty_share_pct": plan_penalty_share(kpis),
        "tso_cost": tso,
        "dso_cost": dso,
        "solve_time_s": get("coordinator_plan_total_s"),
        "iterations_mean": get("coordinator_exchange_iterations_mean"),
        "values_exchanged": get("coordinator_exchange_values_sum"),
    }
    for column, _ in COLUMNS:
        out.setdefault(column, get(column))
    for column in ("coordinator_solves", "coordinator_failed_solves", "interface_schedule_deviation_MWh", "solve_time_s"):
        if math.isnan(out[column]) and not c.coordinated:
            out[column] = 0.0  # nothing was planned or solved
    return out


def penalty_cost(kpis: dict) -> float:
    """The realised violations a run's KPIs hold, at the coordinator's penalty prices (NaN when
    the file holds no feeder node voltages to measure them by)."""
    from coordination.objective import Penalties

    prices = Penalties()

    def number(key: str, absent: float = 0.0) -> float:
        value = kpis.get(key, absent)
        return math.nan if isinstance(value, str) else float(value)

    if not kpis.get("steps"):
        return math.nan  # nothing recorded, nothing measured

    return (prices.voltage * number("voltage_violation_pu2h", math.nan)
            + prices.transmission_overload * _zero_if_nan(number("transmission_overload_MVAh"))
            + prices.ev_unmet * _zero_if_nan(number("ev_owed_at_end_MWh")))


def plan_penalty_share(kpis: dict) -> float:
    """Percentage of the coordinator's planned objective (its recorded cost terms, summed over
    solves) that is penalties; NaN without a coordinator."""
    terms = {key: float(v) for key, v in kpis.items() if key.startswith("coordinator_cost_") and not isinstance(v, str)}
    total = sum(terms.values())
    if not terms or total <= 0:
        return math.nan
    return 100.0 * sum(v for key, v in terms.items() if key.startswith("coordinator_cost_penalty_")) / total


CENTRALIZED = ("centralized", "tso_managed")  # the same joint optimum under two names


def add_gaps(rows: dict[str, dict[str, float]]) -> None:
    """Each scheme's gap to the centralized scheme's economic and penalty cost, when it was run."""
    reference = next((rows[name] for name in CENTRALIZED if name in rows), None)
    for values in rows.values():
        if reference is None:
            values["economic_gap_pct"] = values["penalty_gap"] = math.nan
            continue
        base = reference["total_cost"]
        values["economic_gap_pct"] = 100.0 * (values["total_cost"] - base) / abs(base) if base else math.nan
        values["penalty_gap"] = values["penalty_cost"] - reference["penalty_cost"]


def _zero_if_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def table(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Schemes as columns, KPIs as rows (with units), as printed and saved."""
    add_gaps(rows)
    frame = pd.DataFrame(rows).reindex([name for name, _ in COLUMNS])
    frame.index = [f"{name} [{unit}]" if unit else name for name, unit in COLUMNS]
    return frame


def compare(path: str | Path | None, schemes: list[str], out_dir: Path, overrides: dict[str, object],
            on_run=None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Run the study once per scheme into `out_dir`; returns the KPI table and the errors of
    runs that failed (their column holds what they computed before failing)."""
    from federates.launcher import RunFailed
    from tandem.kpis import kpis
    from tandem.study import run_study

    scenarios = scenarios_for(path, schemes, overrides)
    source = Path(path).read_text() if path else ""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, errors = {}, {}
    for scheme, scenario in scenarios.items():
        output = out_dir / f"{scenario.name}_{scheme}.h5"
        if on_run:
            on_run(scheme, output)
        try:
            run_study(scenario, source, output)
        except RunFailed as exc:
            errors[scheme] = str(exc)
        rows[scheme] = row(kpis(output), scenario) if output.exists() else {c: math.nan for c, _ in COLUMNS}
    frame = table(rows)
    frame.to_csv(out_dir / "compare.csv")
    return frame, errors
