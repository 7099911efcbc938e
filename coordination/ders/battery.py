"""Batteries: charge and discharge as separate variables; SOC (share of kWh) at the end of
period t: soc[t] = soc[t-1] + (eta_c p_ch - p_dis / eta_d) dt[t] / kWh (each period its own length), from the measured soc0,
the bookkeeping of `grid.ders.BatteryUnit`; SOC bounds; a terminal SOC target with a
penalised shortfall; no simultaneous charge and discharge through a binary u[t]
(p_ch <= kW u, p_dis <= kW (1 - u)), or its LP relaxation u in [0, 1] (then charging and
discharging at once only pays when dumping energy does, which degradation cost and
efficiency losses make rare; `solver.BatteryDirections` checks an LP solution and
re-solves only when that happens)."""

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
    input_number,
    measure_reactive_use,
    p_max_at,
    variable_periods,
)
from coordination.options import Options


@dataclass
class BatteryData:
    name: str
    at: str
    kw_rated: float
    kwh_rated: float
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    soc_min: float = 0.1
    soc_max: float = 0.95
    soc_initial: float = 0.5
    soc_target: float | None = None  # at the end of the horizon; None = soc_initial
    kva: float | None = None  # inverter rating; None = kw_rated (as `DerFleet` builds Storage elements)
    reactive: bool = True  # whether Q is a decision

    @property
    def inverter_kva(self) -> float:
        return self.kva or self.kw_rated


def variable_battery(d: pyo.Block, unit: BatteryData, relax: bool) -> None:
    d.soc0 = pyo.Param(mutable=True, initialize=unit.soc_initial)
    target = unit.soc_initial if unit.soc_target is None else unit.soc_target
    d.soc_target = pyo.Param(mutable=True, initialize=target)
    kva = unit.inverter_kva
    d.p_ch = pyo.Var(d.T, bounds=(0.0, unit.kw_rated))
    d.p_dis = pyo.Var(d.T, bounds=(0.0, unit.kw_rated))
    d.q = pyo.Var(d.T, bounds=(-kva, kva) if unit.reactive else (0.0, 0.0))
    d.soc = pyo.Var(d.T, bounds=(unit.soc_min, unit.soc_max))
    d.u = pyo.Var(d.T, domain=pyo.UnitInterval if relax else pyo.Binary)  # 1 = may charge, 0 = may discharge
    d.soc_short = pyo.Var(bounds=(0.0, None))  # shortfall below the terminal target (share of kWh)


def constraint_battery(d: pyo.Block, unit: BatteryData, dt: Sequence[float], sides: int) -> None:
    first, last = d.T.first(), d.T.last()

    def soc_dynamics(_, t):
        before = d.soc0 if t == first else d.soc[d.T.prev(t)]
        return d.soc[t] == before + (unit.eta_charge * d.p_ch[t] - d.p_dis[t] / unit.eta_discharge) * dt[t] / unit.kwh_rated

    d.soc_dynamics = pyo.Constraint(d.T, rule=soc_dynamics)
    d.charge_only = pyo.Constraint(d.T, rule=lambda _, t: d.p_ch[t] <= unit.kw_rated * d.u[t])
    d.discharge_only = pyo.Constraint(d.T, rule=lambda _, t: d.p_dis[t] <= unit.kw_rated * (1 - d.u[t]))
    d.terminal_soc = pyo.Constraint(expr=d.soc[last] + d.soc_short >= d.soc_target)
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: d.p_dis[t] - d.p_ch[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: d.q[t])
    if unit.reactive:
        constraint_inverter_polygon(d, lambda t: d.p_dis[t] - d.p_ch[t], lambda t: d.q[t], unit.inverter_kva, sides, half=False)


def throughput(d: pyo.Block, t: int):
    return d.p_ch[t] + d.p_dis[t]


def measure_battery(d: pyo.Block, unit: BatteryData, dt: Sequence[float]) -> None:
    """d.throughput_kwh (charged + discharged, for degradation), d.soc_shortfall_kwh, d.reactive_kvarh."""
    d.throughput_kwh = pyo.Expression(expr=pyo.quicksum(dt[t] * throughput(d, t) for t in d.T))
    d.soc_shortfall_kwh = pyo.Expression(expr=d.soc_short * unit.kwh_rated)
    measure_reactive_use(d, dt)


def _set_soc0(d: pyo.Block, unit: BatteryData, soc, horizon: int) -> None:
    """The measured SOC, clipped into the unit's limits (a measurement may overshoot them)."""
    d.soc0 = float(min(max(soc, unit.soc_min), unit.soc_max))


class Battery(DerKind):
    name = "battery"
    field = "batteries"
    cost_terms = (
        CostTerm("battery_degradation", "throughput_kwh", lambda o, u: o.prices.battery_degradation / 1000.0,
                 per_period=throughput),
        REACTIVE,
        CostTerm("penalty_soc_target", "soc_shortfall_kwh", lambda o, u: o.penalties.soc_target / 1000.0),
    )
    inputs = (Input("battery_soc", _set_soc0), Input("battery_soc_target", input_number("soc_target")))
    state = ("soc0", "soc_target")
    reactive = True
    intertemporal = ("soc_dynamics", "terminal_soc")
    fleet_key = "battery"

    def build(self, d: pyo.Block, unit: BatteryData, periods: list[int], options: Options, convex: bool) -> None:
        variable_periods(d, periods)
        variable_battery(d, unit, relax=convex or options.battery_binaries != "mip")
        constraint_battery(d, unit, options.durations(), options.polygon_sides)
        measure_battery(d, unit, options.durations())

    def rating_kva(self, unit: BatteryData) -> float:
        return unit.inverter_kva

    def columns(self, d, positions):
        cols = {"charge_kw": positions(d.p_ch), "discharge_kw": positions(d.p_dis), "q_kvar": positions(d.q)}
        if d.soc_dynamics.active:  # robust models drop the SOC dynamics: the SOC is not in them
            cols["soc"] = positions(d.soc)
        return cols

    def setpoints(self, values, d, unit):
        values["p_kw"] = values["discharge_kw"] - values["charge_kw"]
        return values

    def fleet_setpoint(self, values, period, unit):
        """(kW + discharging, kvar)."""
        return float(values["p_kw"][period]), float(values["q_kvar"][period])

    def technical_range(self, d, unit: BatteryData, q, sides):
        H = len(d.T)
        limit = np.minimum(unit.kw_rated, p_max_at(unit.inverter_kva, q, sides)) if unit.reactive else np.full(H, unit.kw_rated)
        return -limit, limit

    def band(self, d, unit: BatteryData, plan, dt_hours, trajectory):
        """A deviation e from the plan moves the SOC by at most |e| dt / (eta_d kWh)
        (discharging less saves p / eta_d; charging more stores eta_c p <= p / eta_d), so the
        band [plan - c, plan + e] with (t + 1) c dt / (eta_d kWh) <= soc_max - soc_plan(t)
        and likewise e against soc_min (and at the end against the SOC target, as far as the
        plan reaches it) keeps the SOC within limits for every sequence."""
        plan = np.asarray(plan, dtype=float)
        soc = trajectory
        steps = (np.arange(len(plan)) + 1) * dt_hours / (unit.eta_discharge * unit.kwh_rated)
        floor = np.full(len(plan), unit.soc_min)
        # Not below the terminal target either (where the plan reaches it): a shortfall is
        # penalised, and regions priced per period cannot see it.
        floor[-1] = max(unit.soc_min, min(float(d.soc_target.value), float(soc[-1])))
        charge = max(0.0, float(np.min((unit.soc_max - soc) / steps)))
        discharge = max(0.0, float(np.min((soc - floor) / steps)))
        lo = np.maximum(-unit.kw_rated, np.minimum(plan, plan - charge))
        hi = np.minimum(unit.kw_rated, np.maximum(plan, plan + discharge))
        return lo, hi

    def from_fleet(self, fleet, spec):
        return [battery_from_fleet(u) for u in fleet.units(self.fleet_key)]

    def offers(self, unit, inputs, periods, prices):
        """Discharge (up) and charge (down) at the power rating, each at the market's battery
        price. Per period: what the stored energy allows over several periods is not checked."""
        kw, price = np.full(periods, unit.kw_rated), np.full(periods, prices["battery"])
        return [Offer(1, kw, price), Offer(-1, kw.copy(), price.copy())]

    def plan_inputs(self, view):
        """The measured SOC of each battery, where the feeder's were measured."""
        soc = view.measured.battery_soc.get(view.feeder)
        if not view.fleet_units or soc is None:
            return {}
        return {"battery_soc": {u.name: float(s) for u, s in zip(view.fleet_units, soc)}}


def battery_from_fleet(unit) -> BatteryData:
    """A `grid.ders.BatteryUnit` as data (its present SOC as the initial one)."""
    return BatteryData(unit.name, unit.at.bus, unit.kw_rated, unit.kwh_rated, unit.eta_charge, unit.eta_discharge,
                       unit.soc_min, unit.soc_max, unit.soc)
