"""The reduced feeder formulation: only the DERs' variables, the network through its affine map.

With the regulator ratios fixed for a plan, LinDist3Flow's voltages, flows and head power are
affine in the DER injections, the loads and the head voltage (`feeder_response`). Regulators
that "hold" their load-side voltage (`Options.regulators`) are as affine: the voltage they hold
is one more input (b.w_held, a right-hand side like the loads). The reduced
block keeps no flow or voltage variables:

* the head power b.p_head[phase, t] is an expression of the DER injections plus an offset
  Param (loads and head voltage: a right-hand side, so re-solves keep HiGHS' factorisation);
* a voltage row v_min^2 - s_lo <= w0[n, t] + J[n] . injections <= v_max^2 + s_hi exists only
  where some DER combination within the units' variable bounds can break the limit (interval
  bound, `screen`); after each solve every other row is checked at the solution and the broken
  ones are added (`check`), then the problem is solved again, until none is broken (the lazy
  loop of `CentralizedProblem.solve`);
* branch limits (the polygon rows of `distribution.constraints_branch_limits`, on the same
  branches) go the same way through the flows' sensitivities.

Slacks exist only on rows that exist (one per row, as in the full model, so issue #15's
"a slack per node" becomes "a slack per row that ever mattered"). The optimum is that of the
full formulation, violated limits included: the reduced problem is the full one without some
penalised rows, so its optimum is no higher; at its optimum every row left out holds (or is
added), so that point costs the same in the full problem, which therefore has it as optimum.
Rows once added stay; rows are never removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.repn import generate_standard_repn

from coordination.distribution import Node, parameters_held_voltage, polygon_sides
from coordination.feeder_response import FeederResponse, feeder_response
from coordination.network_data import FeederData
from coordination.options import as_durations

BIG = 1e9  # kW bound standing for "unbounded" in the interval screening
TOL = 1e-7  # pu^2 (voltages) or kVA (flows) a left-out row may be broken by before it is added


class ReducedFeeder:
    """The rows, offsets and sensitivities of one reduced feeder block (module docstring)."""

    def __init__(self, b: pyo.Block, data: FeederData, p_inj: Mapping[Node, Mapping[int, object]],
                 q_inj: Mapping[Node, Mapping[int, object]], voltage_dependent_loads: bool, hold_regulated: bool,
                 v_min: float, v_max: float, dt_hours: float | Sequence[float], ratings: Mapping[Node, float], sides: int):
        self.b, self.data, self.vdep, self.hold = b, data, voltage_dependent_loads, hold_regulated
        self.w_lo, self.w_hi, self.dt = v_min ** 2, v_max ** 2, as_durations(dt_hours, b.T)
        self.periods = list(b.T)
        self.der_nodes = sorted(set(p_inj) | set(q_inj), key=data.nodes.index)
        self.polygon = np.array(polygon_sides(sides)) if ratings else np.zeros((0, 3))
        self.flows = list(ratings)
        self.rating = np.array([ratings[n] for n in self.flows])
        self.limited = [n for n in data.nodes if n[0] != data.source_bus]
        self._injection_map(p_inj, q_inj)
        self.response = feeder_response(data, voltage_dependent_loads, hold_regulated)
        self._sensitivities()
        self.kept: dict[str, set] = {"upper": set(), "lower": set(), "flow": set()}
        self._params: dict[str, list] = {"upper": [], "lower": [], "flow": []}

    # -- the map, restricted to what the block needs ------------------------------------------
    def _injection_map(self, p_inj, q_inj) -> None:
        """E [(p|q, DER node, period), unit variable]: the injections as a sparse linear map of
        the units' variables, plus their constants (e.g. a flexible load's baseline, a Param)."""
        T = len(self.periods)
        rows, cols, vals, variables, index = [], [], [], [], {}
        self.constants: list[tuple[int, object]] = []
        for k, inj in enumerate((p_inj, q_inj)):
            for i, n in enumerate(self.der_nodes):
                for j, t in enumerate(self.periods):
                    expr = inj.get(n, {}).get(t, 0.0)
                    repn = generate_standard_repn(expr, compute_values=False, quadratic=False)
                    if not (repn.constant.__class__ in (int, float) and repn.constant == 0):
                        self.constants.append(((k * len(self.der_nodes) + i) * T + j, repn.constant))
                    for v, c in zip(repn.linear_vars, repn.linear_coefs):
                        if id(v) not in index:
                            index[id(v)] = len(variables)
                            variables.append(v)
                        rows.append((k * len(self.der_nodes) + i) * T + j)
                        cols.append(index[id(v)])
                        vals.append(float(pyo.value(c)))
        self.unit_vars = variables
        self.E = sp.csr_matrix((vals, (rows, cols)), shape=(2 * len(self.der_nodes) * T, len(variables)))

    def _sensitivities(self) -> None:
        r: FeederResponse = self.response
        node_at = {n: i for i, n in enumerate(r.nodes)}
        flow_at = {n: i for i, n in enumerate(r.flow_nodes)}
        der = [node_at[n] for n in self.der_nodes]
        self.load_at = [node_at[n] for n in self.b.load_nodes]
        lim = [node_at[n] for n in self.limited]
        fl = [flow_at[n] for n in self.flows]

        def on_ders(output: str, rows) -> np.ndarray:  # [row, p at DER nodes then q]
            return np.hstack([r.per_p[output][rows][:, der], r.per_q[output][rows][:, der]])

        self.J = {"w": on_ders("w", lim), "P": on_ders("P", fl), "Q": on_ders("Q", fl),
                  "p_head": on_ders("p_head", slice(None)), "q_head": on_ders("q_head", slice(None))}
        self.rows = {"w": lim, "P": fl, "Q": fl, "p_head": slice(None), "q_head": slice(None)}

    def offsets(self) -> dict[str, np.ndarray]:
        """[row, period] of every output at the block's present loads and head voltage."""
        b, T = self.b, self.periods
        loads = list(b.load_nodes)
        n = len(self.response.nodes)
        p = np.zeros((n, len(T)))
        q = np.zeros_like(p)
        if loads:
            p[self.load_at] = np.array([[b.p_load[bus, ph, t].value for t in T] for bus, ph in loads])
            q[self.load_at] = np.array([[b.q_load[bus, ph, t].value for t in T] for bus, ph in loads])
        w_head = np.array([b.v_source[t].value for t in T]) ** 2
        w_held = np.array([b.w_held[n].value for n in self.response.held_nodes])
        return {k: self.response.offsets(k, p, q, w_head, w_held)[rows] for k, rows in self.rows.items()}

    def injection_constants(self) -> np.ndarray:
        """The injections' constants at the Params' present values, flat like E's rows."""
        out = np.zeros(self.E.shape[0])
        for row, expr in self.constants:
            out[row] += pyo.value(expr)
        return out

    def injections(self, x_units: np.ndarray) -> np.ndarray:
        """[p then q at DER nodes, period] for values of the units' variables."""
        flat = self.E @ x_units + self.injection_constants()
        return flat.reshape(2 * len(self.der_nodes), len(self.periods))

    def injection_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest injections [p then q at DER nodes, period] the units' variable
        bounds allow (their present values: some are Params)."""
        lo = np.array([-BIG if v.lb is None else max(v.lb, -BIG) for v in self.unit_vars])
        hi = np.array([BIG if v.ub is None else min(v.ub, BIG) for v in self.unit_vars])
        pos, neg = self.E.maximum(0), self.E.minimum(0)
        shape = (2 * len(self.der_nodes), len(self.periods))
        c = self.injection_constants()
        return (pos @ lo + neg @ hi + c).reshape(shape), (pos @ hi + neg @ lo + c).reshape(shape)

    # -- which rows --------------------------------------------------------------------------
    def _sides(self, off: dict, inj) -> np.ndarray:
        """[flow, side, period] of the polygon rows' left-hand sides at injections `inj`
        (an array, or (lo, hi) for their largest value over the box)."""
        out = np.empty((len(self.flows), len(self.polygon), len(self.periods)))
        for k, (c, s, _) in enumerate(self.polygon):
            g = c * self.J["P"] + s * self.J["Q"]
            base = c * off["P"] + s * off["Q"]
            if isinstance(inj, tuple):
                lo, hi = inj
                out[:, k] = base + np.maximum(g, 0) @ hi + np.minimum(g, 0) @ lo
            else:
                out[:, k] = base + g @ inj
        return out

    def _limit(self) -> np.ndarray:
        return (self.polygon[:, 2][None, :] * self.rating[:, None])[:, :, None]

    def screen(self, off: dict) -> dict[str, list]:
        """Rows not in the block yet that some injections within the units' bounds break."""
        lo, hi = self.injection_bounds()
        jw = self.J["w"]
        w_max = off["w"] + np.maximum(jw, 0) @ hi + np.minimum(jw, 0) @ lo
        w_min = off["w"] + np.maximum(jw, 0) @ lo + np.minimum(jw, 0) @ hi
        found = {"upper": np.argwhere(w_max > self.w_hi - TOL), "lower": np.argwhere(w_min < self.w_lo + TOL),
                 "flow": np.argwhere(self._sides(off, (lo, hi)) > self._limit() - TOL) if self.flows else []}
        return self._new(found)

    def check(self, off: dict, x_units: np.ndarray) -> dict[str, list]:
        """Rows not in the block that the solution (units' values x_units) breaks, each with
        the same row in every other period (and a branch with all its polygon's sides): the next
        plans see the same nodes bind a period earlier as the horizon moves, and a row added
        now saves a lazy re-solve then."""
        inj = self.injections(x_units)
        w = off["w"] + self.J["w"] @ inj
        periods = np.arange(len(self.periods))
        found = {"upper": np.unique(np.argwhere(w > self.w_hi + TOL)[:, 0]),
                 "lower": np.unique(np.argwhere(w < self.w_lo - TOL)[:, 0])}
        found = {kind: [(i, j) for i in rows for j in periods] for kind, rows in found.items()}
        if self.flows:
            broken = np.unique(np.argwhere(self._sides(off, inj) > self._limit() + TOL)[:, 0])
            found["flow"] = [(i, k, j) for i in broken for k in range(len(self.polygon)) for j in periods]
        return self._new(found)

    def _new(self, found: dict) -> dict[str, list]:
        return {kind: [tuple(int(i) for i in key) for key in keys if tuple(int(i) for i in key) not in self.kept[kind]]
                for kind, keys in found.items()}

    # -- the block's components -----------------------------------------------------------------
    def _der_sum(self, coefs: np.ndarray, t: int) -> object:
        b = self.b
        n = len(self.der_nodes)
        terms = [c * (b.p_inj[self.der_nodes[i], t] if i < n else b.q_inj[self.der_nodes[i - n], t])
                 for i, c in enumerate(coefs) if abs(c) > 1e-13]
        return pyo.quicksum(terms)

    def _row(self, kind: str, key: tuple) -> object:
        """The expression of a row (`set_ratios` rewrites rows with it). Its right-hand side is
        a bare Param, the room the offsets leave (`refresh`): the persistent solver re-sends
        those without walking expressions."""
        b = self.b
        room = b.room[(kind, *key)]
        if kind in ("upper", "lower"):
            i, j = key
            node, t = self.limited[i], self.periods[j]
            w = self._der_sum(self.J["w"][i], t)
            if kind == "upper":
                return w - b.s_v_hi[(*node, t)] <= room
            return w + b.s_v_lo[(*node, t)] >= room
        i, k, j = key
        node, t = self.flows[i], self.periods[j]
        c, s, _ = self.polygon[k]
        return self._der_sum(c * self.J["P"][i] + s * self.J["Q"][i], t) - b.s_flow[(*node, t)] <= room

    def _rooms(self, off: dict, kind: str, keys: np.ndarray) -> np.ndarray:
        """Right-hand sides of rows (keys [row, index]): limit less offset."""
        if kind == "upper":
            return self.w_hi - off["w"][keys[:, 0], keys[:, 1]]
        if kind == "lower":
            return self.w_lo - off["w"][keys[:, 0], keys[:, 1]]
        i, k, j = keys[:, 0], keys[:, 1], keys[:, 2]
        c, s, r = self.polygon[k, 0], self.polygon[k, 1], self.polygon[k, 2]
        return r * self.rating[i] - (c * off["P"][i, j] + s * off["Q"][i, j])

    def add(self, rows: dict[str, list], off: dict) -> tuple[list, list]:
        """Add rows (with their slacks and right-hand sides); returns the new variables and constraints."""
        b = self.b
        new_vars, new_cons = [], []
        for kind, keys in rows.items():
            if not keys:
                continue
            rooms = self._rooms(off, kind, np.array(keys, dtype=int))
            for key, room in zip(keys, rooms):
                self.kept[kind].add(key)
                b.room[(kind, *key)] = float(room)
                self._params[kind].append((b.room[(kind, *key)], key))
                t = self.periods[key[-1]]
                if kind == "flow":
                    idx = (*self.flows[key[0]], t)
                    if idx not in b.s_flow:
                        new_vars.append(b.s_flow[idx])
                    row = (*idx[:2], int(key[1]), t)
                    b.flow_limit[row] = self._row(kind, key)
                    new_cons.append(b.flow_limit[row])
                else:
                    idx = (*self.limited[key[0]], t)
                    slack = b.s_v_hi if kind == "upper" else b.s_v_lo
                    if idx not in slack:
                        new_vars.append(slack[idx])
                    con = b.v_upper if kind == "upper" else b.v_lower
                    con[idx] = self._row(kind, key)
                    new_cons.append(con[idx])
        if new_cons:
            self._totals()
        return new_vars, new_cons

    def _totals(self) -> None:
        b = self.b
        dt = self.dt  # hours per period (periods may differ in length: coordination.resolution)
        b.voltage_violation.set_value(pyo.quicksum(dt[k[-1]] * v for slack in (b.s_v_hi, b.s_v_lo) for k, v in slack.items()))
        b.flow_violation.set_value(pyo.quicksum(dt[k[-1]] * v for k, v in b.s_flow.items()))

    def refresh(self) -> dict[str, np.ndarray]:
        """Write the offsets of the present loads and head voltage into the block's Params (head
        power, rows' right-hand sides); returns them."""
        off = self.offsets()
        b = self.b
        for ph_i, ph in enumerate(b.head_phases):
            for j, t in enumerate(self.periods):
                b.p_head0[ph, t] = float(off["p_head"][ph_i, j])
                b.q_head0[ph, t] = float(off["q_head"][ph_i, j])
        for kind, params in self._params.items():
            if params:
                rooms = self._rooms(off, kind, np.array([key for _, key in params], dtype=int))
                for (param, _), room in zip(params, rooms):
                    param.value = float(room)
        return off

    def voltages(self, off: dict, x_units: np.ndarray) -> dict[Node, np.ndarray]:
        """Voltage magnitudes (pu) per limited node and period at the units' values x_units."""
        w = off["w"] + self.J["w"] @ self.injections(x_units)
        return dict(zip(self.limited, np.sqrt(np.maximum(w, 0.0))))

    def set_ratios(self, data: FeederData) -> list:
        """New regulator ratios: the map of the new ratios, every row and the head power
        rewritten; returns the rewritten constraints (for `PersistentHighs.replace_constraints`;
        the head power also reaches the boundary rows)."""
        for br in data.branches:
            for p, r in zip(br.phases, br.ratio):
                if (br.to_bus, p) in self.b.ratio:
                    self.b.ratio[(br.to_bus, p)] = float(r)
        response = feeder_response(data, self.vdep, self.hold)
        if response is self.response:
            return []
        self.data, self.response = data, response
        self._sensitivities()
        head_expressions(self.b, self)
        changed = []
        for kind, keys in self.kept.items():
            for key in keys:
                if kind == "flow":
                    node, t = self.flows[key[0]], self.periods[key[2]]
                    con = self.b.flow_limit[(*node, int(key[1]), t)]
                else:
                    node, t = self.limited[key[0]], self.periods[key[1]]
                    con = (self.b.v_upper if kind == "upper" else self.b.v_lower)[(*node, t)]
                con.set_value(self._row(kind, key))
                changed.append(con)
        return changed


def head_expressions(b: pyo.Block, reduced: ReducedFeeder) -> None:
    """b.p_head[phase, t], b.q_head[phase, t] = offset Param + sensitivities . DER injections."""
    for i, ph in enumerate(b.head_phases):
        for t in b.T:
            b.p_head[ph, t].set_value(b.p_head0[ph, t] + reduced._der_sum(reduced.J["p_head"][i], t))
            b.q_head[ph, t].set_value(b.q_head0[ph, t] + reduced._der_sum(reduced.J["q_head"][i], t))


def build_reduced_feeder(b: pyo.Block, data: FeederData, p_inj, q_inj, voltage_dependent_loads: bool,
                         hold_regulated: bool, v_min: float, v_max: float, dt_hours: float | Sequence[float], ratings: Mapping[Node, float],
                         sides: int, screened: bool = False) -> ReducedFeeder:
    """The reduced network of a feeder block holding its DERs (`distribution.parameters_feeder`,
    head voltage and units already there): head power, and the rows the screening keeps at the block's
    present data (`screened`; else none, see `Options.feeder_rows`). b.reduced holds the map and the rows (`ReducedFeeder`)."""
    root_phases = data.buses[data.source_bus].phases
    b.head_phases = pyo.Set(initialize=root_phases, ordered=True)
    b.der_nodes = pyo.Set(initialize=sorted(set(p_inj) | set(q_inj), key=data.nodes.index), dimen=2, ordered=True)
    b.p_inj = pyo.Expression(b.der_nodes, b.T, rule=lambda _, bus, ph, t: p_inj.get((bus, ph), {}).get(t, 0.0))
    b.q_inj = pyo.Expression(b.der_nodes, b.T, rule=lambda _, bus, ph, t: q_inj.get((bus, ph), {}).get(t, 0.0))
    b.p_head0 = pyo.Param(b.head_phases, b.T, mutable=True, initialize=0.0)
    b.q_head0 = pyo.Param(b.head_phases, b.T, mutable=True, initialize=0.0)
    b.p_head = pyo.Expression(b.head_phases, b.T)
    b.q_head = pyo.Expression(b.head_phases, b.T)
    b.p_sub = pyo.Expression(b.T, rule=lambda _, t: sum(b.p_head[ph, t] for ph in root_phases))
    b.q_sub = pyo.Expression(b.T, rule=lambda _, t: sum(b.q_head[ph, t] for ph in root_phases))
    # Rows, slacks and offsets are added as screening and the lazy loop find them.
    b.room = pyo.Param(pyo.Any, mutable=True, initialize=0.0)  # rows' right-hand sides, keyed (kind, *row)
    b.s_v_hi = pyo.Var(pyo.Any, dense=False, bounds=(0.0, None))
    b.s_v_lo = pyo.Var(pyo.Any, dense=False, bounds=(0.0, None))
    b.s_flow = pyo.Var(pyo.Any, dense=False, bounds=(0.0, None))
    b.v_upper = pyo.Constraint(pyo.Any)
    b.v_lower = pyo.Constraint(pyo.Any)
    b.flow_limit = pyo.Constraint(pyo.Any)
    b.voltage_violation = pyo.Expression(expr=0.0)
    b.flow_violation = pyo.Expression(expr=0.0)
    parameters_held_voltage(b, data, hold_regulated)
    reduced = ReducedFeeder(b, data, p_inj, q_inj, voltage_dependent_loads, hold_regulated, v_min, v_max, dt_hours,
                            ratings, sides)
    b.reduced = reduced
    head_expressions(b, reduced)
    off = reduced.refresh()
    if screened:
        reduced.add(reduced.screen(off), off)
    return reduced

