"""Coordination schemes side by side: the same study (same network, feeders, profiles and
seeds) run once per scheme, and one KPI table.

    tandem compare runs/pv_centralized.yaml --schemes none,local,centralized
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
    "total_cost": "tso_cost + dso_cost - storage_value",
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


def _zero_if_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def table(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Schemes as columns, KPIs as rows (with units), as printed and saved."""
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
