"""DC optimal power flow (B-theta) of the transmission network over a horizon.

Per period t, in MW and radians:

* flow[l, t] = base_mva (theta[f, t] - theta[t, t] - shift_l) / x_l, the angle of the
  slack bus fixed at 0;
* power balance per bus: generation + unserved - spilled - losses/2 of each incident
  branch - boundary (feeder) load - net flow out = load, with the unserved and spilled
  energy as penalised slacks so a period with too little or too much generation stays
  feasible (their cost is the value of lost load / of spilling);
* generator limits p_min[g, t] <= p[g, t] <= p_max[g, t] (mutable, so forecasts of
  renewable output or outages can be set per solve) and ramp limits between periods,
  including from the previous dispatch p_prev[g] into the first period;
* soft branch limits |flow| <= rating + slack;
* cost: linear c0 + c1 p, or for c2 > 0 the piecewise-linear interpolation of the
  quadratic cost through `segments` + 1 equally spaced breakpoints over [p_min, p_max]
  (an epigraph variable above every secant: exact at the breakpoints, convex, LP).

Optional losses (`variables_losses` + `constraints_losses`): the loss of a branch is
r f^2 / base_mva (MW, at 1 pu voltage); it is approximated from above by the secants
of that parabola through `segments` + 1 breakpoints in |f| from 0 to the branch rating
(or `flow_max_mw`), as an epigraph loss >= slope_k |f| + intercept_k, written for +f and
-f. Half of each branch's loss is taken from each end bus. Like every epigraph loss
model, the LP may book more loss than the parabola when spilling energy pays (negative
prices); with positive prices the loss sits on the interpolant.

The locational marginal prices are the duals of the power balance divided by the
period length (see `lmps`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyomo.environ as pyo

from coordination.network_data import TransmissionData
from coordination.options import as_durations, ramp_hours


def parameters_transmission(b: pyo.Block, data: TransmissionData, periods: Iterable[int],
                            boundary_buses: Iterable[int] = ()) -> None:
    """Sets and mutable Params: bus loads (MW) per period, generator limits per period,
    the previous dispatch (for the first period's ramp)."""
    b.T = pyo.Set(initialize=list(periods), ordered=True)
    b.buses = pyo.Set(initialize=data.buses, ordered=True)
    b.branches = pyo.Set(initialize=[br.name for br in data.branches], ordered=True)
    b.gens = pyo.Set(initialize=[g.name for g in data.generators], ordered=True)
    b.boundary_buses = pyo.Set(initialize=sorted(set(boundary_buses)), ordered=True)
    load = data.bus_load_mw()
    b.load_mw = pyo.Param(b.buses, b.T, mutable=True, initialize=lambda _, bus, t: load[bus])
    gens = {g.name: g for g in data.generators}
    b.p_min = pyo.Param(b.gens, b.T, mutable=True,
                        initialize=lambda _, g, t: gens[g].p_min_mw if gens[g].p_min_mw is not None else -1e9)
    b.p_max = pyo.Param(b.gens, b.T, mutable=True,
                        initialize=lambda _, g, t: gens[g].p_max_mw if gens[g].p_max_mw is not None else 1e9)
    b.p_prev = pyo.Param(b.gens, mutable=True, initialize=lambda _, g: gens[g].p_mw)


def variables_transmission(b: pyo.Block, data: TransmissionData) -> None:
    """Generation, bus angles, branch flows, boundary loads and the balance slacks."""
    gens = {g.name: g for g in data.generators}

    def gen_bounds(_, g, t):
        # Unbounded sides stay unbounded (no 1e9 bounds in the LP).
        return (b.p_min[g, t] if gens[g].p_min_mw is not None else None,
                b.p_max[g, t] if gens[g].p_max_mw is not None else None)

    b.pg = pyo.Var(b.gens, b.T, bounds=gen_bounds)
    b.theta = pyo.Var(b.buses, b.T, bounds=lambda _, bus, t: (0.0, 0.0) if bus == data.slack_bus else (None, None))
    b.flow = pyo.Var(b.branches, b.T)
    b.boundary_mw = pyo.Var(b.boundary_buses, b.T)
    b.unserved = pyo.Var(b.buses, b.T, bounds=(0.0, None))
    b.spilled = pyo.Var(b.buses, b.T, bounds=(0.0, None))


def constraints_dc_flow(b: pyo.Block, data: TransmissionData) -> None:
    """B-theta: flow = base_mva (theta_f - theta_t - shift) / x."""
    branches = {br.name: br for br in data.branches}

    def rule(_, name, t):
        br = branches[name]
        return b.flow[name, t] == data.base_mva / br.x_pu * (b.theta[br.from_bus, t] - b.theta[br.to_bus, t] - br.shift_rad)

    b.dc_flow = pyo.Constraint(b.branches, b.T, rule=rule)


def variables_losses(b: pyo.Block, data: TransmissionData, flow_max_mw: float | None = None) -> None:
    """b.loss[l, t] (MW) for branches with resistance and a flow range (rating or flow_max_mw)."""
    lossy = [br.name for br in data.branches
             if br.r_pu > 0 and (br.rating_mw is not None or flow_max_mw is not None)]
    b.lossy_branches = pyo.Set(initialize=lossy, ordered=True)
    b.loss = pyo.Var(b.lossy_branches, b.T, bounds=(0.0, None))


def constraints_losses(b: pyo.Block, data: TransmissionData, segments: int = 4,
                       flow_max_mw: float | None = None, dt_hours: float | Sequence[float] = 1.0) -> None:
    """Piecewise-linear branch losses from above (see the module docstring)."""
    cuts = []
    for br in data.branches:
        if br.name not in b.lossy_branches:
            continue
        f_max = br.rating_mw if br.rating_mw is not None else flow_max_mw
        k = br.r_pu / data.base_mva  # loss = k f^2
        points = np.linspace(0.0, f_max, segments + 1)
        for lo, hi in zip(points[:-1], points[1:]):
            cuts.append((br.name, k * (lo + hi), -k * lo * hi))  # secant through (lo, k lo^2) and (hi, k hi^2)
    b.loss_cuts = pyo.Set(initialize=range(len(cuts)), ordered=True)
    b.loss_pos = pyo.Constraint(b.loss_cuts, b.T, rule=lambda _, i, t: b.loss[cuts[i][0], t] >= cuts[i][1] * b.flow[cuts[i][0], t] + cuts[i][2])
    b.loss_neg = pyo.Constraint(b.loss_cuts, b.T, rule=lambda _, i, t: b.loss[cuts[i][0], t] >= -cuts[i][1] * b.flow[cuts[i][0], t] + cuts[i][2])
    dt = as_durations(dt_hours, b.T)
    b.losses_mwh = pyo.Expression(expr=pyo.quicksum(dt[t] * b.loss[l, t] for l in b.lossy_branches for t in b.T))


def constraints_power_balance(b: pyo.Block, data: TransmissionData, losses: bool = False) -> None:
    """Generation - withdrawals - net flow out = load, per bus and period (dual: see `lmps`)."""
    at_bus: dict[int, list[str]] = {bus: [] for bus in data.buses}
    for g in data.generators:
        at_bus[g.bus].append(g.name)
    out_of: dict[int, list[str]] = {bus: [] for bus in data.buses}
    into: dict[int, list[str]] = {bus: [] for bus in data.buses}
    for br in data.branches:
        out_of[br.from_bus].append(br.name)
        into[br.to_bus].append(br.name)
    boundary = set(b.boundary_buses)

    def rule(_, bus, t):
        lhs = (pyo.quicksum(b.pg[g, t] for g in at_bus[bus]) + b.unserved[bus, t] - b.spilled[bus, t]
               - pyo.quicksum(b.flow[name, t] for name in out_of[bus]) + pyo.quicksum(b.flow[name, t] for name in into[bus]))
        if bus in boundary:
            lhs = lhs - b.boundary_mw[bus, t]
        if losses:
            lhs = lhs - 0.5 * pyo.quicksum(b.loss[name, t] for name in out_of[bus] + into[bus] if name in b.lossy_branches)
        return lhs == b.load_mw[bus, t]

    b.power_balance = pyo.Constraint(b.buses, b.T, rule=rule)


def constraints_branch_limits(b: pyo.Block, data: TransmissionData, dt_hours: float | Sequence[float] = 1.0) -> None:
    """Soft thermal limits -rating - s <= flow <= rating + s; b.flow_violation in MWh."""
    rated = {br.name: br.rating_mw for br in data.branches if br.rating_mw is not None}
    b.rated_branches = pyo.Set(initialize=list(rated), ordered=True)
    b.s_flow = pyo.Var(b.rated_branches, b.T, bounds=(0.0, None))
    b.flow_upper = pyo.Constraint(b.rated_branches, b.T, rule=lambda _, l, t: b.flow[l, t] - b.s_flow[l, t] <= rated[l])
    b.flow_lower = pyo.Constraint(b.rated_branches, b.T, rule=lambda _, l, t: b.flow[l, t] + b.s_flow[l, t] >= -rated[l])
    dt = as_durations(dt_hours, b.T)
    b.flow_violation = pyo.Expression(expr=pyo.quicksum(dt[t] * b.s_flow[l, t] for l in b.rated_branches for t in b.T))


def constraints_ramp_limits(b: pyo.Block, data: TransmissionData, dt_hours: float | Sequence[float] = 1.0) -> None:
    """-ramp_down h <= p[t] - p[t-1] <= ramp_up h, with p[-1] = p_prev (the last dispatch) and h
    the hours between the periods' middles (`options.ramp_hours`: dt on a uniform horizon)."""
    ramping = [g for g in data.generators if g.ramp_up_mw_per_h is not None or g.ramp_down_mw_per_h is not None]
    gens = {g.name: g for g in ramping}
    b.ramping_gens = pyo.Set(initialize=[g.name for g in ramping], ordered=True)
    first = b.T.first()
    hours = ramp_hours(as_durations(dt_hours, b.T), list(b.T))

    def before(g, t):
        return b.p_prev[g] if t == first else b.pg[g, b.T.prev(t)]

    def up(_, g, t):
        if gens[g].ramp_up_mw_per_h is None:
            return pyo.Constraint.Skip
        return b.pg[g, t] - before(g, t) <= gens[g].ramp_up_mw_per_h * hours[t]

    def down(_, g, t):
        if gens[g].ramp_down_mw_per_h is None:
            return pyo.Constraint.Skip
        return before(g, t) - b.pg[g, t] <= gens[g].ramp_down_mw_per_h * hours[t]

    b.ramp_up = pyo.Constraint(b.ramping_gens, b.T, rule=up)
    b.ramp_down = pyo.Constraint(b.ramping_gens, b.T, rule=down)


def objective_generation_cost(b: pyo.Block, data: TransmissionData, dt_hours: float | Sequence[float] = 1.0, segments: int = 4) -> None:
    """b.cost_generation: the generation cost over the horizon (currency). Quadratic costs
    are interpolated piecewise-linearly between the generator's limits."""
    gens = {g.name: g for g in data.generators}
    quadratic = [g.name for g in data.generators
                 if g.c2 > 0 and g.p_min_mw is not None and g.p_max_mw is not None and g.p_max_mw > g.p_min_mw]
    cuts = []
    for name in quadratic:
        g = gens[name]
        points = np.linspace(g.p_min_mw, g.p_max_mw, segments + 1)
        for lo, hi in zip(points[:-1], points[1:]):
            slope = g.c1 + g.c2 * (lo + hi)
            cuts.append((name, slope, g.c0 + g.c1 * lo + g.c2 * lo * lo - slope * lo))
    b.quadratic_gens = pyo.Set(initialize=quadratic, ordered=True)
    b.cost_cuts = pyo.Set(initialize=range(len(cuts)), ordered=True)
    b.gen_cost = pyo.Var(b.quadratic_gens, b.T)
    b.gen_cost_cut = pyo.Constraint(b.cost_cuts, b.T, rule=lambda _, i, t: b.gen_cost[cuts[i][0], t] >= cuts[i][1] * b.pg[cuts[i][0], t] + cuts[i][2])
    quad = set(quadratic)

    def cost(g, t):
        return b.gen_cost[g, t] if g in quad else gens[g].c0 + gens[g].c1 * b.pg[g, t]

    dt = as_durations(dt_hours, b.T)
    b.cost_generation = pyo.Expression(expr=pyo.quicksum(dt[t] * cost(g, t) for g in b.gens for t in b.T))
    b.unserved_mwh = pyo.Expression(expr=pyo.quicksum(dt[t] * b.unserved[bus, t] for bus in b.buses for t in b.T))
    b.spilled_mwh = pyo.Expression(expr=pyo.quicksum(dt[t] * b.spilled[bus, t] for bus in b.buses for t in b.T))


def add_dcopf(b: pyo.Block, data: TransmissionData, periods: Iterable[int], dt_hours: float | Sequence[float] = 1.0,
              boundary_buses: Iterable[int] = (), losses: bool = False, loss_segments: int = 4,
              loss_flow_max_mw: float | None = None, cost_segments: int = 4) -> None:
    """The whole DC-OPF on a block: parameters, variables, constraints and the cost terms."""
    parameters_transmission(b, data, periods, boundary_buses)
    variables_transmission(b, data)
    constraints_dc_flow(b, data)
    if losses:
        variables_losses(b, data, loss_flow_max_mw)
        constraints_losses(b, data, loss_segments, loss_flow_max_mw, dt_hours)
    constraints_power_balance(b, data, losses)
    constraints_branch_limits(b, data, dt_hours)
    constraints_ramp_limits(b, data, dt_hours)
    objective_generation_cost(b, data, dt_hours, cost_segments)


def set_bus_load(b: pyo.Block, load_mw: dict[int, Iterable[float]] | np.ndarray) -> None:
    """Bus loads per period: {bus: [MW per period]} or an array [bus (in b.buses order), period]."""
    periods = list(b.T)
    items = load_mw.items() if isinstance(load_mw, dict) else zip(b.buses, np.asarray(load_mw))
    for bus, row in items:
        row = np.broadcast_to(np.asarray(row, dtype=float), (len(periods),))
        for t, v in zip(periods, row):
            b.load_mw[bus, t] = float(v)


def set_generator_limits(b: pyo.Block, p_max_mw: dict[str, Iterable[float]] | None = None,
                         p_min_mw: dict[str, Iterable[float]] | None = None,
                         p_prev_mw: dict[str, float] | None = None) -> None:
    """Per-period limits (forecast renewable output, outages) and the previous dispatch."""
    periods = list(b.T)
    for param, values in ((b.p_max, p_max_mw), (b.p_min, p_min_mw)):
        for g, row in (values or {}).items():
            row = np.broadcast_to(np.asarray(row, dtype=float), (len(periods),))
            for t, v in zip(periods, row):
                param[g, t] = float(v)
    for g, v in (p_prev_mw or {}).items():
        b.p_prev[g] = float(v)


def lmps(duals, b: pyo.Block, dt_hours: float | Sequence[float] = 1.0) -> dict[int, np.ndarray]:
    """Locational marginal prices (currency per MWh) per bus and period from the duals of the
    power balance (as returned by `PersistentHighs.duals(b.power_balance)`)."""
    periods = list(b.T)
    dt = as_durations(dt_hours, periods)
    return {bus: np.array([duals[b.power_balance[bus, t]] / dt[t] for t in periods]) for bus in b.buses}


def dispatch(values, b: pyo.Block) -> dict[str, np.ndarray]:
    """Generator dispatch (MW) per generator and period from solved values."""
    periods = list(b.T)
    return {g: np.array([values[b.pg[g, t]] for t in periods]) for g in b.gens}
