"""Flexible loads: baseline[t] (mutable forecast) moved up or down within per-period limits,
energy-neutral over the horizon (what is moved comes back within it), at `shift_price` per
MWh moved up plus down. Their set-point is the shift, up - down (kW more consumed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from coordination.ders.kind import CostTerm, DerKind, Input, Offer, input_series, series, variable_periods
from coordination.objective import Prices
from coordination.options import Options


@dataclass
class FlexibleLoadData:
    name: str
    at: str
    baseline_kw: float  # initial forecast
    up_kw: float  # largest increase above the baseline per period
    down_kw: float  # largest decrease below the baseline per period
    q_per_p: float = 0.0  # kvar per kW (the load's power factor)
    shift_price: float | None = None  # per MWh moved up or down; None: `Prices.load_shift`


def variable_flexible_load(d: pyo.Block, unit: FlexibleLoadData) -> None:
    d.baseline = pyo.Param(d.T, mutable=True, initialize=unit.baseline_kw)
    d.up_max = pyo.Param(d.T, mutable=True, initialize=unit.up_kw)
    d.down_max = pyo.Param(d.T, mutable=True, initialize=unit.down_kw)
    d.up = pyo.Var(d.T, bounds=(0.0, None))
    d.down = pyo.Var(d.T, bounds=(0.0, None))


def constraint_flexible_load(d: pyo.Block, unit: FlexibleLoadData, dt: Sequence[float]) -> None:
    d.up_limit = pyo.Constraint(d.T, rule=lambda _, t: d.up[t] <= d.up_max[t])
    # Never below zero consumption, never below the allowed decrease.
    d.down_limit = pyo.Constraint(d.T, rule=lambda _, t: d.down[t] <= d.down_max[t])
    d.down_positive = pyo.Constraint(d.T, rule=lambda _, t: d.down[t] <= d.baseline[t])
    # Energy moved, not power: each period weighs by its length (relative to the first's, so
    # a uniform horizon keeps unit coefficients).
    first = dt[d.T.first()]
    d.energy_neutral = pyo.Constraint(expr=pyo.quicksum(dt[t] / first * (d.up[t] - d.down[t]) for t in d.T) == 0)
    d.consumption = pyo.Expression(d.T, rule=lambda _, t: d.baseline[t] + d.up[t] - d.down[t])
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: -d.consumption[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: -unit.q_per_p * d.consumption[t])


def shifted(d: pyo.Block, t: int):
    return d.up[t] + d.down[t]


def measure_flexible_load(d: pyo.Block, dt: Sequence[float]) -> None:
    d.shifted_kwh = pyo.Expression(expr=pyo.quicksum(dt[t] * shifted(d, t) for t in d.T))


def shift_price(options: Options, unit: FlexibleLoadData) -> float:
    """Currency per kWh moved."""
    return (options.prices.load_shift if unit.shift_price is None else unit.shift_price) / 1000.0


class FlexibleLoad(DerKind):
    name = "flexible_load"
    field = "flexible"
    cost_terms = (CostTerm("load_shift", "shifted_kwh", shift_price, per_period=shifted),)
    inputs = (Input("flexible_baseline_kw", input_series("baseline")),)
    state = ("baseline",)
    intertemporal = ("energy_neutral",)
    fleet_key = "flexible_load"
    q_follows_p = True

    def build(self, d: pyo.Block, unit: FlexibleLoadData, periods: list[int], options: Options, convex: bool) -> None:
        variable_periods(d, periods)
        variable_flexible_load(d, unit)
        constraint_flexible_load(d, unit, options.durations())
        measure_flexible_load(d, options.durations())

    def rating_kva(self, unit: FlexibleLoadData) -> float:
        return unit.up_kw

    def columns(self, d, positions):
        return {"up": positions(d.up), "down": positions(d.down)}

    def setpoints(self, values, d, unit):
        """p_kw: the consumption (kW, baseline + shift), shift_kw: the set-point (+ = more consumed)."""
        shift = values["up"] - values["down"]
        return {"p_kw": series(d.baseline) + values["up"] - values["down"], "shift_kw": shift}

    def fleet_setpoint(self, values, period, unit):
        """kW shifted, + more consumed."""
        return float(values["shift_kw"][period])

    def from_fleet(self, fleet, spec):
        """(Read only with the feeder's spec, which holds the limits and the price.)"""
        if spec is None or getattr(spec, self.fleet_key).penetration <= 0:
            return []
        return [flexible_load_from_fleet(u, getattr(spec, self.fleet_key)) for u in fleet.units(self.fleet_key)]

    def plan_inputs(self, view):
        """Each load's baseline, forecast (stream 2) from its consumption over the run."""
        if not view.units:
            return {}
        units = view.fleet_units
        baseline = view.forecast(np.array([u.baseline_kw for u in units]), 2)
        return {"flexible_baseline_kw": {u.name: row for u, row in zip(units, baseline)}}

    def baseline_kw(self, unit, inputs, periods):
        """Its baseline consumption (injected: minus)."""
        return -np.broadcast_to(np.asarray(inputs.get("flexible_baseline_kw", unit.baseline_kw), dtype=float), (periods,))

    def offers(self, unit, inputs, periods, prices):
        """Drawing less (up, as far as `down_kw` and its baseline allow) and more (down, `up_kw`),
        at its own shift price, else the market's price for the kind, else `Prices.load_shift`."""
        base = -self.baseline_kw(unit, inputs, periods)
        price = np.full(periods, unit.shift_price if unit.shift_price is not None else prices.get(self.name, Prices().load_shift))
        return [Offer(1, np.minimum(unit.down_kw, np.maximum(base, 0.0)), price), Offer(-1, np.full(periods, unit.up_kw), price.copy())]

    def technical_range(self, d, unit, q, sides):
        base, up, down = series(d.baseline), series(d.up_max), series(d.down_max)
        return -(base + up), -np.maximum(base - down, 0.0)


def flexible_load_from_spec(spec, name: str, at: str, peak_kw: float) -> FlexibleLoadData:
    """A flexible load of a `scenario.schema.FlexibleLoadSpec` with a baseline peaking at
    `peak_kw` (the baseline itself comes with the forecasts)."""
    return FlexibleLoadData(name, at, baseline_kw=0.0, up_kw=spec.up_pu * peak_kw, down_kw=spec.down_pu * peak_kw,
                            q_per_p=math.tan(math.acos(spec.power_factor)), shift_price=spec.shift_price)


def flexible_load_from_fleet(unit, spec) -> FlexibleLoadData:
    """A simulation flexible load as data. The unit needs `name`, `at.bus` and `peak_kw`
    (its baseline's peak); limits, power factor and price come from the feeder's spec."""
    return flexible_load_from_spec(spec, unit.name, unit.at.bus, unit.peak_kw)
