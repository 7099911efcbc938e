"""What every kind of DER gives the look-ahead problems: the protocol the kind modules fill in.

A kind (PV, batteries, ...) is one module with a data class for a unit and a `DerKind`
subclass. In the style of PowerModels.jl, `build` composes `variable_*` and `constraint_*`
functions on the unit's own pyomo Block; whatever it creates, the problems find by name:

* `p_kw[t]`, `q_kvar[t]`  the unit's injection (Expressions, kW and kvar, + into the grid),
                          which `coordination.ders.der_injections` spreads over its phases;
* the measures its `cost_terms` price (Expressions over the horizon);
* the mutable Params its `inputs` write (forecasts and measured state).

Everything a problem does per kind goes through this class: building, cost terms, new data,
reading the solution (`columns`, `setpoints`), and what a DSO offers the TSO (`state`,
`technical_range`, `band`, `intertemporal`) or a flexibility market (`baseline_kw`, `offers`); and everything the receding horizon does per
kind: the units of the simulated feeder as data (`from_fleet`), their forecasts and state
before each plan (`plan_inputs`) and what a plan leaves them (`planned`). A new kind is a
new module and one line in `coordination.ders.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from coordination.distribution import polygon_sides
from coordination.options import Options


@dataclass(frozen=True)
class CostTerm:
    """A unit's share of a named objective term: price(options, unit) x the block's `measure`.

    `per_period(d, t)` is the measure's part incurred in period t (None: a horizon-end
    quantity, such as a shortfall); `in_tso` is False for costs of decisions the TSO does not
    make in the hybrid scheme (reactive power stays with the DSO); `optional` terms appear in
    an objective only where some unit has them, so problems without the kind keep the terms
    they always had."""

    name: str
    measure: str
    price: Callable[[Options, object], float]
    per_period: Callable[[pyo.Block, int], object] | None = None
    in_tso: bool = True
    optional: bool = False


@dataclass(frozen=True)
class Input:
    """New data for the units of a kind: `keyword` in `coordination.update.Update.of` (values
    by feeder, then unit), written into the block by `apply(d, unit, value, horizon)`."""

    keyword: str
    apply: Callable[[pyo.Block, object, object, int], None]


@dataclass(frozen=True)
class Offer:
    """What a unit offers a flexibility market (`coordination.market`): a change of its
    injection in one direction (+1 up: more into the grid; -1 down), up to `kw` per period, at
    `price` per MWh per period."""

    direction: int
    kw: np.ndarray
    price: np.ndarray


@dataclass
class PlanView:
    """What a kind sees of one feeder when the receding horizon makes a plan at `step`."""

    feeder: str
    index: int  # the feeder's position in the scenario (its forecasts' series)
    step: int
    step_hours: float
    periods: int
    steps_per_period: int
    fleet: object  # the coordinator's copy of the feeder's `grid.ders.DerFleet`
    fleet_units: list  # the kind's units in it
    units: list  # the same units as data (`from_fleet`)
    measured: object  # `coordination.receding_horizon.Measurements` after the step before
    state: dict  # the kind's own memory for this feeder from plan to plan (starts empty)
    forecaster: Callable[[np.ndarray, int], np.ndarray]  # (values over the run, series) -> per-period means
    period_steps: tuple[int, ...] = ()  # steps of each period (multi-resolution); () = steps_per_period each

    @property
    def steps(self) -> int:
        """Steps the horizon covers."""
        return sum(self.period_steps) if self.period_steps else self.periods * self.steps_per_period

    @property
    def period_hours(self) -> float:
        """The first period's length (what a plan's set-points run for)."""
        return self.steps_per_period * self.step_hours

    def aggregate(self, values: np.ndarray) -> np.ndarray:
        """Per-period means [..., periods] of values over the horizon's steps [..., steps]."""
        return period_means(values, self.period_steps or (self.steps_per_period,) * self.periods)

    def forecast(self, values: np.ndarray, stream: int) -> np.ndarray:
        """Per-period forecasts [..., periods] of `values` (over the run's steps) as the scenario's
        forecaster sees them, noise drawn from the kind's own `stream` (1 PV, 2 flexible loads;
        0 is the feeder's loads): series 1 + 3 x feeder + stream, the numbering results keep;
        streams from 3 get series of their own above any feeder count."""
        series = 1 + 3 * self.index + stream if stream < 3 else stream * 1_000_003 + self.index
        return self.forecaster(values, series)


def period_means(values: np.ndarray, period_steps: Sequence[int]) -> np.ndarray:
    """Means [..., periods] of values [..., steps] over consecutive runs of period_steps[t] steps
    (a coarse period's forecast: the mean of the fine steps it covers)."""
    values = np.asarray(values, dtype=float)
    steps = np.asarray(period_steps, dtype=int)
    if np.all(steps == steps[0]):  # the reshape keeps uniform horizons' forecasts as they were, to the bit
        return values.reshape(*values.shape[:-1], len(steps), int(steps[0])).mean(axis=-1)
    starts = np.concatenate([[0], np.cumsum(steps)[:-1]])
    return np.add.reduceat(values, starts, axis=-1) / steps


class DerKind:
    """One kind of DER (see the module docstring). Subclasses set the class attributes and
    implement `build`, `columns` and `technical_range`."""

    name: str  # block name under a feeder block, and the prefix of unit keys "name/unit"
    field: str  # the list of these units on `FeederDers`
    cost_terms: tuple[CostTerm, ...] = ()
    inputs: tuple[Input, ...] = ()
    state: tuple[str, ...] = ()  # Params the TSO's copy of a unit needs (hybrid), from the DSO's model
    reactive: bool = False  # Q is a decision of its own (the DSO keeps it in hybrid)
    q_follows_p: bool = False  # Q is the unit's `q_per_p` x P (a load at its power factor)
    banded: bool = True  # gets per-period power bands in the robust regions (dso_managed)
    intertemporal: tuple[str, ...] = ()  # constraints coupling periods, replaced by bands in robust models
    fleet_key: str  # the kind's part of the set-point message (`grid.setpoints.Setpoints`)

    # -- building ---------------------------------------------------------------------------
    def build(self, d: pyo.Block, unit, periods: list[int], options: Options, convex: bool) -> None:
        """Variables, constraints, p_kw / q_kvar and cost measures of one unit on its block;
        `convex` asks for binaries relaxed (regions, ADMM and the TSO's copies)."""
        raise NotImplementedError

    def rating_kva(self, unit) -> float:
        """What the unit adds to the power a branch upstream may carry (branch-limit screening)."""
        raise NotImplementedError

    # -- reading a solution -----------------------------------------------------------------
    def columns(self, d: pyo.Block, positions: Callable) -> dict[str, np.ndarray]:
        """The solver columns of the values a solution gives per unit, by name."""
        raise NotImplementedError

    def setpoints(self, values: dict[str, np.ndarray], d: pyo.Block, unit) -> dict[str, np.ndarray]:
        """The unit's set-points and recorded values from its columns' values (arrays over
        the horizon); by default the column values themselves."""
        return values

    def fleet_setpoint(self, values: dict[str, np.ndarray], period: int, unit) -> object:
        """One period's set-point of a unit as its part of the set-point message holds it."""
        raise NotImplementedError

    # -- the receding horizon ----------------------------------------------------------------
    def from_fleet(self, fleet, spec) -> list:
        """The units of the kind in a simulated feeder (`grid.ders.DerFleet`, `fleet.units(fleet_key)`)
        as data, with the feeder's scenario spec (None: a kind that needs it reads no units)."""
        raise NotImplementedError

    def plan_inputs(self, view: PlanView) -> dict[str, dict[str, object]]:
        """The units' new data for a plan, as `inputs` keywords {keyword: {unit: value}}."""
        return {}

    def planned(self, view: PlanView, values: dict[str, dict[str, np.ndarray]], part: dict) -> None:
        """A plan was made: each unit's solution values (`setpoints`) and the kind's part of
        the first period's set-point message; what it leaves is kept in `view.state`."""

    # -- a flexibility market ---------------------------------------------------------------
    def baseline_kw(self, unit, inputs: dict[str, object], periods: int) -> np.ndarray:
        """The unit's injection per period (kW) without flexibility, from its `inputs` values
        (this kind's keywords, the unit's value each): a market's baseline. None by default."""
        return np.zeros(periods)

    def offers(self, unit, inputs: dict[str, object], periods: int, prices: dict[str, float]) -> list[Offer]:
        """What the unit offers a flexibility market around its baseline; `prices`: the market's
        chosen price per MWh by kind name (a kind with cost data of its own uses those). None
        by default."""
        return []

    # -- what a DSO offers ------------------------------------------------------------------
    def technical_range(self, d: pyo.Block, unit, q: np.ndarray | None, sides: int) -> tuple[np.ndarray, np.ndarray]:
        """The unit's active-power range per period from its own limits (kW injected), with
        its reactive power at q (kinds with `reactive`)."""
        raise NotImplementedError

    def band(self, d: pyo.Block, unit, plan: np.ndarray, dt_hours: float,
             trajectory: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per-period bands around a plan (kW injected) within which any choice, period by
        period, keeps the unit's intertemporal limits (`flexibility.robust_bands`);
        `trajectory` is the unit's state over the plan where it has one (battery SOC).
        By default the plan itself."""
        plan = np.asarray(plan, dtype=float)
        return plan, plan


# -- building blocks shared by kinds -------------------------------------------------------


def series(param) -> np.ndarray:
    """The values of a per-period Param, in period order."""
    return np.array([p.value for p in param.values()], dtype=float)


def set_series(param, values, horizon: int) -> None:
    """A per-period Param from an array over the horizon (or one number for every period)."""
    row = np.broadcast_to(np.asarray(values, dtype=float), (horizon,))
    for t, v in zip(param.index_set(), row):
        param[t] = float(v)


def input_series(param_name: str) -> Callable:
    """An `Input.apply` writing a per-period Param."""
    return lambda d, unit, value, horizon: set_series(d.component(param_name), value, horizon)


def input_number(param_name: str) -> Callable:
    """An `Input.apply` writing a scalar Param."""
    return lambda d, unit, value, horizon: d.component(param_name).set_value(float(value))


def variable_periods(d: pyo.Block, periods: Iterable[int]) -> None:
    d.T = pyo.Set(initialize=list(periods), ordered=True)


def constraint_inverter_polygon(d: pyo.Block, p, q, kva: float, sides: int, half: bool) -> None:
    """P cos a + Q sin a <= r kVA on each polygon side (see `distribution.polygon_sides`)."""
    polygon = polygon_sides(sides, half=half)
    d.sides = pyo.Set(initialize=range(len(polygon)), ordered=True)
    d.kva_limit = pyo.Constraint(d.sides, d.T, rule=lambda _, k, t: polygon[k][0] * p(t) + polygon[k][1] * q(t) <= polygon[k][2] * kva)


def measure_reactive_use(d: pyo.Block, dt: Sequence[float]) -> None:
    """d.reactive_kvarh = sum of |Q| dt[t] over the horizon. Priced, even a little, it makes an
    inverter's Q zero unless it helps: reactive power is otherwise free in the model, and
    a free Q is an arbitrary Q, which the (DC) transmission side would not even see."""
    d.q_abs = pyo.Var(d.T, bounds=(0.0, None))
    d.q_abs_up = pyo.Constraint(d.T, rule=lambda _, t: d.q_abs[t] >= d.q[t])
    d.q_abs_down = pyo.Constraint(d.T, rule=lambda _, t: d.q_abs[t] >= -d.q[t])
    d.reactive_kvarh = pyo.Expression(expr=pyo.quicksum(dt[t] * d.q_abs[t] for t in d.T))


# The price of reactive use, the same for every inverter-connected kind.
REACTIVE = CostTerm("reactive", "reactive_kvarh", lambda o, u: o.prices.reactive / 1000.0,
                    per_period=lambda d, t: d.q_abs[t], in_tso=False)


def p_max_at(kva: float, q: np.ndarray, sides: int) -> np.ndarray:
    """The largest P an inverter's polygon allows at reactive power q (see `polygon_sides`)."""
    out = np.full(np.shape(q), float(kva))
    for c, s, r in polygon_sides(sides):
        if c > 1e-12:
            out = np.minimum(out, (r * kva - s * np.asarray(q)) / c)
    return np.maximum(out, 0.0)
