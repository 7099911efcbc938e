"""EV chargers: 0 <= P <= max_kW x plugged[t], energy delivered over the horizon >= the energy
required (mutable, penalised shortfall)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from coordination.ders.kind import CostTerm, DerKind, Input, input_number, input_series, series, variable_periods
from coordination.options import Options


@dataclass
class EVData:
    name: str
    at: str
    max_kw: float


def variable_ev(d: pyo.Block, unit: EVData) -> None:
    d.plugged = pyo.Param(d.T, mutable=True, initialize=0.0)
    d.energy_required = pyo.Param(mutable=True, initialize=0.0)  # kWh to deliver within the horizon
    d.p = pyo.Var(d.T, bounds=(0.0, unit.max_kw))
    d.unmet = pyo.Var(bounds=(0.0, None))


def constraint_ev(d: pyo.Block, unit: EVData, dt: Sequence[float]) -> None:
    d.plugged_limit = pyo.Constraint(d.T, rule=lambda _, t: d.p[t] <= unit.max_kw * d.plugged[t])
    d.energy = pyo.Constraint(expr=pyo.quicksum(dt[t] * d.p[t] for t in d.T) + d.unmet >= d.energy_required)
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: -d.p[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: 0.0 * d.p[t])


def measure_ev(d: pyo.Block) -> None:
    d.unmet_kwh = pyo.Expression(expr=d.unmet)


class EV(DerKind):
    name = "ev"
    field = "evs"
    cost_terms = (CostTerm("penalty_ev_unmet", "unmet_kwh", lambda o, u: o.penalties.ev_unmet / 1000.0),)
    inputs = (Input("ev_plugged", input_series("plugged")), Input("ev_energy_kwh", input_number("energy_required")))
    state = ("plugged", "energy_required")
    intertemporal = ("energy",)
    fleet_key = "ev"

    def build(self, d: pyo.Block, unit: EVData, periods: list[int], options: Options, convex: bool) -> None:
        variable_periods(d, periods)
        variable_ev(d, unit)
        constraint_ev(d, unit, options.durations())
        measure_ev(d)

    def rating_kva(self, unit: EVData) -> float:
        return unit.max_kw

    def columns(self, d, positions):
        return {"p_kw": positions(d.p)}

    def fleet_setpoint(self, values, period, unit):
        """kW charged (never negative)."""
        return float(max(0.0, values["p_kw"][period]))

    def technical_range(self, d, unit: EVData, q, sides):
        plugged = series(d.plugged)
        return -unit.max_kw * plugged, np.zeros(len(plugged))

    def band(self, d, unit: EVData, plan, dt_hours, trajectory):
        """Charging at least the plan (the energy owed has no upper limit)."""
        plugged = series(d.plugged)
        return np.minimum(-unit.max_kw * plugged, plan), np.asarray(plan, dtype=float)

    def from_fleet(self, fleet, spec):
        return [ev_from_fleet(u) for u in fleet.units(self.fleet_key)]

    def plan_inputs(self, view):
        """Brings the coordinator's copies of the chargers to the plan's step the way the
        feeders charge them (the same rule, sessions and set-points, so what each EV still
        needs is known without being sent), then their plugged-in share per period and the
        energy the horizon must deliver (`ev_horizon`)."""
        units = view.fleet_units
        for k in range(view.state.get("step", 0), view.step):
            for unit in units:
                unit.charge(k, view.step_hours)
                unit.book(view.step_hours)
        view.state["step"] = view.step
        if not units:
            return {}
        plugged, energy = {}, {}
        for unit in units:
            steps, energy[unit.name] = ev_horizon(unit, view.step, view.steps, view.step_hours)
            plugged[unit.name] = view.aggregate(steps)
        return {"ev_plugged": plugged, "ev_energy_kwh": energy}

    def planned(self, view, values, part):
        """The copies charge at the plan's set-points from now on, as the feeders' do."""
        for unit in view.fleet_units:
            unit.setpoint_kw = part[unit.name]


def ev_from_fleet(unit) -> EVData:
    """A `grid.ders.EVCharger` (name, at.bus, max_kw) as data."""
    return EVData(unit.name, unit.at.bus, unit.max_kw)


def ev_horizon(unit, k: int, horizon: int, step_hours: float) -> tuple[np.ndarray, float]:
    """Plugged-in flags over steps k .. k+horizon-1 and the energy (kWh) the horizon must
    deliver for a `grid.ders.EVCharger`: what is owed for sessions leaving within
    the horizon, and what cannot wait until after the horizon for those leaving later."""
    plugged = np.zeros(horizon)
    required = 0.0
    end = k + horizon
    for s in unit.sessions:
        if s.depart_step <= k or s.arrive_step >= end:
            continue
        plugged[max(s.arrive_step, k) - k: min(s.depart_step, end) - k] = 1.0
        if s.arrive_step < k:  # plugged in already: what it still needs
            owed = unit.owed_kwh
        elif s.arrive_step == k:  # arriving now: the fleet books the session's energy on apply()
            owed = unit.owed_kwh or s.energy_kwh
        else:
            owed = s.energy_kwh
        after = max(0, s.depart_step - end) * unit.max_kw * step_hours  # deliverable after the horizon
        required += max(0.0, owed - after)
    return plugged, required
