"""Dispatchable distributed generators (gensets): output P in [0, rating], or with unit
commitment P in [p_min u, rating u] with u[t] on/off; Q within the kVA circle (an inscribed
polygon, as for inverters) and zero when off; ramp limits against the previous period (the
measured output p0 before the first); a convex piecewise-linear cost: the output split into
equal-width segments seg[k, t], each at its own price per MWh (non-decreasing, so the cheap
segments fill first); with commitment, start[t] - stop[t] = u[t] - u[t-1], minimum up and
down times (a start in the last UT periods keeps the unit on, a stop in the last DT keeps
it off) and a start-up cost per start.

With commitment the problems are MIPs (u binary), except where a convex problem is needed
(regions, ADMM, the TSO's copies in hybrid), which relax u into [0, 1]."""

from __future__ import annotations

import math
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
    set_series,
    variable_periods,
)
from coordination.options import Options, as_durations, ramp_hours


@dataclass
class DGData:
    name: str
    at: str
    kw_rated: float
    kva: float | None = None  # apparent-power rating; None = kw_rated
    cost_per_mwh: tuple[float, ...] = (150.0,)  # price of each equal-width segment of [0, kw_rated]
    ramp_kw_per_hour: float | None = None  # None: no ramp limit
    commitment: bool = False
    p_min_kw: float = 0.0  # with commitment: minimum stable output when on
    min_up_hours: float = 0.0
    min_down_hours: float = 0.0
    startup_cost: float = 0.0  # per start
    p_initial_kw: float = 0.0  # output before the horizon (until `dg_output_kw` says otherwise)
    on_initial: bool = False  # with commitment: on before the horizon

    def __post_init__(self):
        if any(b < a for a, b in zip(self.cost_per_mwh, self.cost_per_mwh[1:])):
            raise ValueError(f"DG {self.name}: segment costs must not decrease (got {list(self.cost_per_mwh)})")

    @property
    def apparent_kva(self) -> float:
        return self.kva or self.kw_rated


def periods_of(hours: float, dt_hours: float) -> int:
    """Whole periods covering `hours` (a minimum up or down time)."""
    return max(0, math.ceil(hours / dt_hours - 1e-9))


def periods_covering(hours: float, dt: Sequence[float]) -> int:
    """The first periods of lengths dt that cover `hours` (all of them if they do not);
    `periods_of` when the lengths are equal."""
    if len(set(dt)) == 1:
        return periods_of(hours, dt[0])
    if hours <= 1e-9 * dt[0]:
        return 0
    ends = np.cumsum(dt) / dt[0]
    return int(min(len(dt), np.searchsorted(ends, hours / dt[0] - 1e-9) + 1))  # through the first end >= hours


def held_window(hours: float, dt: Sequence[float], i: int) -> int:
    """Periods before period i (itself included) a start or stop within `hours` of its own
    start falls in: `periods_of(hours, dt)` at most, for equal lengths."""
    if len(set(dt)) == 1:
        return min(i + 1, periods_of(hours, dt[0]))
    starts = np.concatenate([[0.0], np.cumsum(dt)[:-1]])
    return int(np.sum(starts[i] - starts[:i + 1] < hours - 1e-9 * dt[0]))


def variable_dg(d: pyo.Block, unit: DGData, relax: bool) -> None:
    d.p0 = pyo.Param(mutable=True, initialize=unit.p_initial_kw)
    d.u0 = pyo.Param(mutable=True, initialize=float(unit.on_initial))
    d.must_run = pyo.Param(d.T, mutable=True, initialize=0.0)  # 1: kept on by its minimum up time
    d.must_off = pyo.Param(d.T, mutable=True, initialize=0.0)  # 1: kept off by its minimum down time
    n = len(unit.cost_per_mwh)
    d.K = pyo.Set(initialize=range(n), ordered=True)
    d.seg = pyo.Var(d.K, d.T, bounds=(0.0, unit.kw_rated / n))
    d.p = pyo.Var(d.T, bounds=(0.0, unit.kw_rated))
    kva = unit.apparent_kva
    d.q = pyo.Var(d.T, bounds=(-kva, kva))
    if unit.commitment:
        d.u = pyo.Var(d.T, domain=pyo.UnitInterval if relax else pyo.Binary)
        d.start = pyo.Var(d.T, bounds=(0.0, 1.0))
        d.stop = pyo.Var(d.T, bounds=(0.0, 1.0))


def constraint_dg_output(d: pyo.Block, unit: DGData, sides: int) -> None:
    d.segments = pyo.Constraint(d.T, rule=lambda _, t: d.p[t] == pyo.quicksum(d.seg[k, t] for k in d.K))
    constraint_inverter_polygon(d, lambda t: d.p[t], lambda t: d.q[t], unit.apparent_kva, sides, half=True)
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: d.p[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: d.q[t])


def constraint_dg_commitment(d: pyo.Block, unit: DGData, dt: Sequence[float]) -> None:
    """On/off limits, start and stop bookkeeping, minimum up and down times."""
    first = d.T.first()
    kva = unit.apparent_kva
    d.p_on_min = pyo.Constraint(d.T, rule=lambda _, t: d.p[t] >= unit.p_min_kw * d.u[t])
    d.p_on_max = pyo.Constraint(d.T, rule=lambda _, t: d.p[t] <= unit.kw_rated * d.u[t])
    d.q_on_max = pyo.Constraint(d.T, rule=lambda _, t: d.q[t] <= kva * d.u[t])
    d.q_on_min = pyo.Constraint(d.T, rule=lambda _, t: -d.q[t] <= kva * d.u[t])
    d.switch = pyo.Constraint(d.T, rule=lambda _, t: d.u[t] - (d.u0 if t == first else d.u[d.T.prev(t)])
                              == d.start[t] - d.stop[t])
    d.kept_on = pyo.Constraint(d.T, rule=lambda _, t: d.u[t] >= d.must_run[t])
    d.kept_off = pyo.Constraint(d.T, rule=lambda _, t: d.u[t] <= 1 - d.must_off[t])
    periods = list(d.T)
    lengths = [dt[t] for t in periods]
    # Periods back from each t that a start (stop) holds on (off): by the hours between them.
    up = [held_window(unit.min_up_hours, lengths, i) for i in range(len(periods))]
    down = [held_window(unit.min_down_hours, lengths, i) for i in range(len(periods))]
    if periods_covering(unit.min_up_hours, lengths) > 1:
        d.min_up = pyo.Constraint(d.T, rule=lambda _, t: pyo.quicksum(
            d.start[s] for s in periods[periods.index(t) - up[periods.index(t)] + 1: periods.index(t) + 1]) <= d.u[t])
    if periods_covering(unit.min_down_hours, lengths) > 1:
        d.min_down = pyo.Constraint(d.T, rule=lambda _, t: pyo.quicksum(
            d.stop[s] for s in periods[periods.index(t) - down[periods.index(t)] + 1: periods.index(t) + 1]) <= 1 - d.u[t])


def constraint_dg_ramp(d: pyo.Block, unit: DGData, dt: Sequence[float]) -> None:
    """|P[t] - P[t-1]| <= ramp x the hours between the periods' middles (`ramp_hours`: dt on a
    uniform horizon); with commitment a start may jump to p_min (and a stop from it)."""
    first = d.T.first()
    hours = ramp_hours(as_durations(dt, d.T), list(d.T))

    def step(t):
        return unit.ramp_kw_per_hour * hours[t]

    def before(t):
        return d.p0 if t == first else d.p[d.T.prev(t)]

    def jump_up(t):
        return unit.p_min_kw * d.start[t] if unit.commitment else 0.0

    def jump_down(t):
        return unit.p_min_kw * d.stop[t] if unit.commitment else 0.0

    d.ramp_up = pyo.Constraint(d.T, rule=lambda _, t: d.p[t] - before(t) <= step(t) + jump_up(t))
    d.ramp_down = pyo.Constraint(d.T, rule=lambda _, t: before(t) - d.p[t] <= step(t) + jump_down(t))


def energy_cost(d: pyo.Block, t: int):
    """Currency per hour of period t's output."""
    return pyo.quicksum(d.segment_price[k] * d.seg[k, t] for k in d.K)


def measure_dg(d: pyo.Block, unit: DGData, dt: Sequence[float]) -> None:
    """d.generation_cost and d.startup_total (currency), d.reactive_kvarh."""
    d.segment_price = {k: c / 1000.0 for k, c in enumerate(unit.cost_per_mwh)}  # currency per kWh
    d.generation_cost = pyo.Expression(expr=pyo.quicksum(dt[t] * energy_cost(d, t) for t in d.T))
    # A start in period t is a cost of that period: as a rate, so `per_period` x dt[t] gives it.
    d.startup_rate = pyo.Expression(d.T, rule=lambda _, t: unit.startup_cost / dt[t] * d.start[t]
                                    if unit.commitment else 0.0)
    d.startup_total = pyo.Expression(expr=pyo.quicksum(dt[t] * d.startup_rate[t] for t in d.T))
    measure_reactive_use(d, dt)


def _set_status(d: pyo.Block, unit: DGData, status, horizon: int) -> None:
    """(on, hours in that state): the initial on/off state and the periods the minimum up or
    down time still holds it there."""
    on, hours = status
    dt = d.durations
    d.u0 = float(bool(on))
    run, off = np.zeros(horizon), np.zeros(horizon)
    if on:
        run[:min(horizon, periods_covering(max(0.0, unit.min_up_hours - hours), dt))] = 1.0
    else:
        off[:min(horizon, periods_covering(max(0.0, unit.min_down_hours - hours), dt))] = 1.0
    set_series(d.must_run, run, horizon)
    set_series(d.must_off, off, horizon)


def _price_one(options: Options, unit: DGData) -> float:
    return 1.0  # the measures are in currency already (segment prices and start-up cost per unit)


class DG(DerKind):
    name = "dg"
    field = "dg"
    cost_terms = (
        CostTerm("dg_generation", "generation_cost", _price_one, per_period=energy_cost, optional=True),
        CostTerm("dg_startup", "startup_total", _price_one, per_period=lambda d, t: d.startup_rate[t], optional=True),
        REACTIVE,
    )
    inputs = (Input("dg_output_kw", input_number("p0")), Input("dg_status", _set_status))
    state = ("p0", "u0", "must_run", "must_off")
    reactive = True
    intertemporal = ("switch", "min_up", "min_down", "ramp_up", "ramp_down")
    fleet_key = "dg"

    def build(self, d: pyo.Block, unit: DGData, periods: list[int], options: Options, convex: bool) -> None:
        variable_periods(d, periods)
        d.durations = [options.durations()[t] for t in periods]  # (`_set_status` reads them)
        variable_dg(d, unit, relax=convex)
        constraint_dg_output(d, unit, options.polygon_sides)
        if unit.commitment:
            constraint_dg_commitment(d, unit, options.durations())
        if unit.ramp_kw_per_hour is not None:
            constraint_dg_ramp(d, unit, options.durations())
        measure_dg(d, unit, options.durations())

    def rating_kva(self, unit: DGData) -> float:
        return unit.apparent_kva

    def columns(self, d, positions):
        cols = {"p_kw": positions(d.p), "q_kvar": positions(d.q)}
        if d.component("u") is not None:
            cols["on"] = positions(d.u)
        return cols

    def fleet_setpoint(self, values, period, unit):
        """(kW, kvar)."""
        return float(values["p_kw"][period]), float(values["q_kvar"][period])

    def from_fleet(self, fleet, spec):
        """(Read only with the feeder's spec, which holds costs, ramps and commitment.)"""
        if spec is None or getattr(spec, self.fleet_key).penetration <= 0:
            return []
        return [dg_from_fleet(u, getattr(spec, self.fleet_key)) for u in fleet.units(self.fleet_key)]

    def offers(self, unit, inputs, periods, prices):
        """Its whole rating (up, from off), at the mean of its segment costs."""
        return [Offer(1, np.full(periods, unit.kw_rated), np.full(periods, float(np.mean(unit.cost_per_mwh))))]

    def plan_inputs(self, view):
        """Each genset's output and (on, hours in that state) as the plans so far left it: the
        feeders follow the set-points, so the coordinator knows them without a measurement."""
        if not view.units:
            return {}
        state = view.state.setdefault("units", {u.name: (u.p_initial_kw, u.on_initial, math.inf) for u in view.units})
        return {"dg_output_kw": {u: p for u, (p, _, _) in state.items()},
                "dg_status": {u: (on, hours) for u, (_, on, hours) in state.items()}}

    def planned(self, view, values, part):
        state = view.state.get("units", {})
        for unit, (_, was_on, held) in state.items():
            state[unit] = _status_after(values[unit], was_on, held, view.period_hours)

    def technical_range(self, d, unit: DGData, q, sides):
        H = len(d.T)
        return np.zeros(H), np.minimum(unit.kw_rated, p_max_at(unit.apparent_kva, q, sides))

    def band(self, d, unit: DGData, plan, dt_hours, trajectory):
        """With commitment, the plan (on/off decisions couple the periods). Otherwise bands of
        half-widths w around the plan such that any choice within them, period by period,
        keeps every ramp: w[t] + w[t-1] <= ramp dt - |plan[t] - plan[t-1]| (the output before
        the horizon is fixed, so w[0] alone takes the first slack); without ramp limits the
        whole rating."""
        plan = np.asarray(plan, dtype=float)
        if unit.commitment:
            return super().band(d, unit, plan, dt_hours, trajectory)
        if unit.ramp_kw_per_hour is None:
            return np.zeros(len(plan)), np.full(len(plan), float(unit.kw_rated))
        before = np.concatenate([[float(d.p0.value)], plan[:-1]])
        slack = np.maximum(unit.ramp_kw_per_hour * dt_hours - np.abs(plan - before), 0.0)
        shared = np.append(slack[1:] / 2.0, np.inf)  # with the next period
        width = np.minimum(shared, np.concatenate([[slack[0]], slack[1:] / 2.0]))
        return np.maximum(plan - width, 0.0), np.minimum(plan + width, unit.kw_rated)


def _status_after(values: dict[str, np.ndarray], was_on: bool, held: float, hours: float) -> tuple[float, bool, float]:
    """A genset's output, status and hours in that status after a plan's first period."""
    p = float(values["p_kw"][0])
    on = bool(values["on"][0] > 0.5) if "on" in values else p > 1e-6
    return p, on, held + hours if on == was_on else hours


def dg_from_spec(spec, name: str, at: str, kw_rated: float) -> DGData:
    """A genset of a `scenario.schema.DGSpec` with its rating."""
    return DGData(
        name, at, kw_rated, kva=spec.kva_ratio * kw_rated, cost_per_mwh=tuple(spec.cost_per_mwh),
        ramp_kw_per_hour=None if spec.ramp_pu_per_hour is None else spec.ramp_pu_per_hour * kw_rated,
        commitment=spec.commitment, p_min_kw=spec.p_min_pu * kw_rated if spec.commitment else 0.0,
        min_up_hours=spec.min_up_hours, min_down_hours=spec.min_down_hours, startup_cost=spec.startup_cost,
    )


def dg_from_fleet(unit, spec) -> DGData:
    """A simulation genset as data. The unit needs `name`, `at.bus` and `kw_rated`; costs,
    ramps and commitment come from the feeder's spec."""
    return dg_from_spec(spec, unit.name, unit.at.bus, unit.kw_rated)
