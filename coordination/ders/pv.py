"""PV: 0 <= P <= available[t] (mutable forecast), |Q| <= q_max and the inverter's kVA circle
as an inscribed polygon (vertices on the circle, so P = kVA stays reachable)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from coordination.ders.kind import (
    REACTIVE,
    CostTerm,
    DerKind,
    Input,
    Offer,
    constraint_inverter_polygon,
    input_series,
    measure_reactive_use,
    p_max_at,
    series,
    variable_periods,
)
from coordination.options import Options


@dataclass
class PVData:
    name: str
    at: str  # "bus.phase", "bus.1.2.3" or "bus"
    kva: float  # inverter rating
    pmpp_kw: float
    q_max_kvar: float | None = None  # reactive capability; None = the inverter's kVA
    available_kw: float = 0.0  # initial forecast of the available power


def variable_pv(d: pyo.Block, unit: PVData) -> None:
    d.available = pyo.Param(d.T, mutable=True, initialize=unit.available_kw)
    q_max = unit.kva if unit.q_max_kvar is None else unit.q_max_kvar
    d.p = pyo.Var(d.T, bounds=(0.0, unit.kva))
    d.q = pyo.Var(d.T, bounds=(-q_max, q_max))


def constraint_pv(d: pyo.Block, unit: PVData, sides: int) -> None:
    d.p_available = pyo.Constraint(d.T, rule=lambda _, t: d.p[t] <= d.available[t])
    constraint_inverter_polygon(d, lambda t: d.p[t], lambda t: d.q[t], unit.kva, sides, half=True)
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: d.p[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: d.q[t])


def curtailed(d: pyo.Block, t: int):
    return d.available[t] - d.p[t]


def measure_pv(d: pyo.Block, dt: Sequence[float]) -> None:
    """d.curtailed_kwh: available energy not used over the horizon; d.reactive_kvarh."""
    d.curtailed_kwh = pyo.Expression(expr=pyo.quicksum(dt[t] * curtailed(d, t) for t in d.T))
    measure_reactive_use(d, dt)


class PV(DerKind):
    name = "pv"
    field = "pv"
    cost_terms = (
        CostTerm("curtailment", "curtailed_kwh", lambda o, u: o.prices.curtailment / 1000.0, per_period=curtailed),
        REACTIVE,
    )
    inputs = (Input("pv_available_kw", input_series("available")),)
    state = ("available",)
    reactive = True
    banded = False  # its energy is not coupled over time
    fleet_key = "pv"

    def build(self, d: pyo.Block, unit: PVData, periods: list[int], options: Options, convex: bool) -> None:
        variable_periods(d, periods)
        variable_pv(d, unit)
        constraint_pv(d, unit, options.polygon_sides)
        measure_pv(d, options.durations())

    def rating_kva(self, unit: PVData) -> float:
        return unit.kva

    def columns(self, d, positions):
        return {"p_kw": positions(d.p), "q_kvar": positions(d.q)}

    def setpoints(self, values, d, unit: PVData):
        values["available_kw"] = series(d.available)
        pmpp = unit.pmpp_kw
        values["p_cap_pu"] = np.clip(values["p_kw"] / pmpp, 0.0, 1.0) if pmpp > 0 else 0 * values["p_kw"]
        return values

    def fleet_setpoint(self, values, period, unit: PVData):
        """(cap as a share of Pmpp, kvar). PV planned to use all it was forecast to have is sent
        uncapped, so a sunnier period than forecast is not curtailed."""
        full = values["p_kw"][period] >= values["available_kw"][period] - 1e-6 * max(1.0, unit.pmpp_kw)
        return 1.0 if full else float(values["p_cap_pu"][period]), float(values["q_kvar"][period])

    def technical_range(self, d, unit: PVData, q, sides):
        available = series(d.available)
        return np.zeros(len(available)), np.minimum(np.maximum(available, 0.0), p_max_at(unit.kva, q, sides))

    def band(self, d, unit, plan, dt_hours, trajectory):
        raise TypeError("PV has no bands (banded = False)")

    def from_fleet(self, fleet, spec):
        return [pv_from_fleet(u) for u in fleet.units(self.fleet_key)]

    def baseline_kw(self, unit, inputs, periods):
        """The available power: no curtailment."""
        return np.broadcast_to(np.asarray(inputs.get("pv_available_kw", 0.0), dtype=float), (periods,)).copy()

    def offers(self, unit, inputs, periods, prices):
        """Curtailment (down) of all of the available power, at the market's PV price."""
        return [Offer(-1, self.baseline_kw(unit, inputs, periods), np.full(periods, prices["pv"]))]

    def plan_inputs(self, view):
        """Available power: each unit's Pmpp x the forecast irradiance (kW/m², stream 1)."""
        if not view.fleet_units:
            return {}
        sun = view.forecast(view.fleet.irradiance_kw_m2, 1)
        return {"pv_available_kw": {u.name: u.pmpp_kw * sun for u in view.fleet_units}}


def pv_from_fleet(unit) -> PVData:
    """A `grid.ders.PVUnit` (name, at.bus, kva, pmpp_kw) as data."""
    return PVData(unit.name, unit.at.bus, unit.kva, unit.pmpp_kw)
