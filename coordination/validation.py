"""DER flexibility validated by the DSO against its own network (the `hybrid` scheme).

Each DER offers its technical range of active power per period. The DSO answers with
ranges [lo, hi] its feeder can absorb in every combination: whatever values within the
ranges the TSO picks, period by period, no voltage or branch limit is violated (beyond what
the DSO's own reference dispatch already violates).

LinDist3Flow is linear, so with taps and head voltage given every network quantity y is
affine in the units' injections x: y = y_ref + J (x - x_ref). `Sensitivities` computes J
once (per tap setting) from the model's own equations: a one-period copy of the feeder
with the units' injections as free columns, whose equality system A_y y + A_x x = b is
solved for J = -A_y^-1 A_x. A limit a . y <= L then holds for every x in the box
[lo, hi] iff

    a . y_ref + sum_u (g_u^+ hi_u - g_u^- lo_u - g_u x_ref,u) <= L,   g = a J,

(g^+ and g^- the positive and negative parts), linear in (lo, hi). The DSO maximises the
widths of the ranges (each as a share of its technical range) subject to these rows for
every voltage limit and every branch-limit polygon side, per period. Rows that no
combination within the technical ranges could violate are dropped first.

Priority of shared DER (`priority`):
* "dso": each range must contain the unit's power in the DSO's reference dispatch (its own
  optimum), so what the DSO needs for its own network is reserved before the TSO dispatches;
* "tso": the ranges need not contain it: the TSO gets the widest ranges the network allows.
In both, reactive power stays with the DSO at its reference values (the TSO's DC model has no
use for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp

from coordination.centralized import FeederSetup, Options
from coordination.ders import parse_connection
from coordination.ders.kind import series
from coordination.ders.registry import KINDS
from coordination.distribution import (
    constraints_lindist3flow,
    parameters_feeder,
    polygon_sides,
    set_ratios,
    variables_lindist3flow,
)
from coordination.dso import FeederProblem
from coordination.feeder_response import network_response
from coordination.interface import constraints_head_voltage, parameters_head_voltage
from coordination.network_data import FeederData
from coordination.solver import PersistentHighs

PRIORITIES = ("dso", "tso")


@dataclass
class DerOffer:
    """What a DSO sends the TSO in `hybrid` (units keyed "kind/name"; arrays over the horizon)."""

    lo: dict[str, np.ndarray]  # validated active-power range, kW injected
    hi: dict[str, np.ndarray]
    q: dict[str, np.ndarray]  # reactive power the DSO keeps (PV and batteries), kvar
    base_kw: np.ndarray  # head P with every unit at zero (linearised at the reference)
    sens: dict[str, float]  # -d(head P)/d(unit P)
    state: dict[str, dict[str, object]]  # PV available, battery SOC and target, EV plugged and energy, load baseline
    rows: int  # network rows the validation kept


class Sensitivities:
    """J = d(network variables)/d(unit injections) of one feeder (see the module docstring)."""

    def __init__(self, setup: FeederSetup, options: Options):
        data = setup.data
        self.setup = setup
        m = pyo.ConcreteModel()
        m.feeder = pyo.Block()
        fb = m.feeder
        parameters_feeder(fb, data, [0])
        variables_lindist3flow(fb, data)
        at = {f"{kind.name}/{u.name}": u.at for kind, u in setup.ders.units()}
        self.units = list(at)
        m.units = pyo.Set(initialize=self.units, ordered=True)
        m.x_p = pyo.Var(m.units)
        m.x_q = pyo.Var(m.units)
        p_inj: dict = {}
        q_inj: dict = {}
        for u in self.units:
            bus, phases = parse_connection(at[u], data)
            for ph in phases:
                p_inj.setdefault((bus, ph), {0: 0.0})[0] += m.x_p[u] / len(phases)
                q_inj.setdefault((bus, ph), {0: 0.0})[0] += m.x_q[u] / len(phases)
        constraints_lindist3flow(fb, data, p_inj, q_inj, options.voltage_dependent_loads)
        parameters_head_voltage(fb, 1.0)
        constraints_head_voltage(fb, data)
        m.objective = pyo.Objective(expr=0.0)
        self.model = m
        self.solver = PersistentHighs(m)
        # Units whose kvar follow their kW (flexible loads at their power factor).
        self.q_per_p = {f"{kind.name}/{u.name}": u.q_per_p for kind in KINDS if kind.q_follows_p for u in setup.ders.of(kind)}
        self.J: np.ndarray | None = None

    def set_ratios(self, data: FeederData) -> None:
        self.solver.replace_constraints(set_ratios(self.model.feeder, data))
        self.J = None

    def jacobian(self) -> np.ndarray:
        """[column, unit]: change of every column of the one-period model per kW a unit injects
        (with its reactive power held, except flexible loads, whose kvar follow their kW)."""
        if self.J is not None:
            return self.J
        s = self.solver
        if s.highs is None:
            s.solve()
        m = self.model
        xp, xq = s.positions(m.x_p), s.positions(m.x_q)
        try:
            full, _, _ = network_response(s, np.concatenate([xp, xq]))
        except RuntimeError as err:
            raise RuntimeError(f"feeder {self.setup.data.name}: LinDist3Flow {err}") from None
        n = len(self.units)
        full_p, full_q = full[:, :n].copy(), full[:, n:]
        for k, u in enumerate(self.units):
            if u in self.q_per_p:
                full_p[:, k] += self.q_per_p[u] * full_q[:, k]
        self.J = full_p
        return self.J

    def rows(self, variables) -> np.ndarray:
        """Sensitivity rows [variable, unit] of VarData of the one-period model."""
        return self.jacobian()[self.solver.positions(variables)]

    def linear(self, expr) -> np.ndarray:
        """Sensitivity of a linear expression of the one-period model, per unit."""
        form = self.solver.linear(expr)
        return form.coefs @ self.jacobian()[form.cols]


class DerValidator:
    """The hybrid scheme's DSO side: validates the DER ranges of one feeder (module docstring)."""

    def __init__(self, main: FeederProblem):
        self.main = main
        self.setup = main.setup
        self.sens = Sensitivities(main.setup, main.options)

    def set_ratios(self, data: FeederData) -> None:
        self.sens.set_ratios(data)

    def technical_ranges(self, q: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Each unit's active-power range per period from its own limits (kW injected), with
        the reactive power of the units that have their own (`DerKind.reactive`) at q."""
        sides = self.main.options.polygon_sides
        lo, hi = {}, {}
        for kind, name, d in self.main.units:
            key = f"{kind.name}/{name}"
            lo[key], hi[key] = kind.technical_range(d, d.unit, q.get(key), sides)
        return lo, hi

    def state(self) -> dict[str, dict[str, object]]:
        """The units' state and forecasts the TSO's DER models need (`DerKind.state`)."""
        out: dict[str, dict[str, object]] = {}
        for kind, name, d in self.main.units:
            values = {}
            for param_name in kind.state:
                param = d.component(param_name)
                values[param_name] = series(param) if param.is_indexed() else float(param.value)
            out[f"{kind.name}/{name}"] = values
        return out

    def validate(self, priority: str = "dso") -> DerOffer:
        """Validated ranges around the main problem's last solution (the DSO's reference)."""
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be 'dso' or 'tso' (got {priority!r})")
        main, sens = self.main, self.sens
        fb, sfb = main.model.feeder, sens.model.feeder
        H = len(main.model.T)
        units = sens.units
        x_ref_all = main.unit_power()
        q_ref_all = main.unit_reactive()
        x_ref = np.array([x_ref_all[u] for u in units]).reshape(len(units), H)
        reactive = {f"{kind.name}/{name}" for kind, name, _ in main.units if kind.reactive}
        q = {u: q_ref_all[u] for u in units if u in reactive}
        tech_lo, tech_hi = self.technical_ranges(q)
        low = np.array([tech_lo[u] for u in units]).reshape(len(units), H)
        high = np.array([tech_hi[u] for u in units]).reshape(len(units), H)
        x_ref = np.clip(x_ref, low, high)
        x = main.solver.solution()
        # Network rows: g . (x - x_ref) <= limit - value at the reference, per period.
        grads, values, limits = [], [], []
        nodes = list(fb.limited_nodes)
        if nodes:
            w_ref = x[main.solver.positions(fb.w[n, t] for n in nodes for t in fb.T)].reshape(len(nodes), H)
            g_w = sens.rows(sfb.w[bus, ph, 0] for bus, ph in nodes)
            vmax2, vmin2 = self.setup.v_max ** 2, self.setup.v_min ** 2
            grads += [g_w, -g_w]
            values += [w_ref, -w_ref]
            limits += [np.maximum(vmax2, w_ref), np.maximum(-vmin2, -w_ref)]
        flows = list(fb.limited_flows) if hasattr(fb, "limited_flows") else []
        if flows:
            rating = {(br.to_bus, p): br.rating_kva for br in self.setup.data.branches for p in br.phases}
            p_ref = x[main.solver.positions(fb.P[n, t] for n in flows for t in fb.T)].reshape(len(flows), H)
            q_ref = x[main.solver.positions(fb.Q[n, t] for n in flows for t in fb.T)].reshape(len(flows), H)
            g_p = sens.rows(sfb.P[bus, ph, 0] for bus, ph in flows)
            g_q = sens.rows(sfb.Q[bus, ph, 0] for bus, ph in flows)
            cap = np.array([rating[n] for n in flows])[:, None]
            for c, s, r in polygon_sides(main.options.polygon_sides):
                value = c * p_ref + s * q_ref
                grads.append(c * g_p + s * g_q)
                values.append(value)
                limits.append(np.maximum(r * cap, value))
        g = np.vstack(grads) if grads else np.zeros((0, len(units)))
        value = np.vstack(values) if values else np.zeros((0, H))
        limit = np.vstack(limits) if limits else np.zeros((0, H))
        lo, hi, kept = _box_lp(g, value, limit, x_ref, low, high, priority == "dso")
        head = sens.linear(sfb.p_sub[0])  # d p_sub / d x_u
        p_sub_ref = main.last.p_kw
        base = p_sub_ref - head @ x_ref
        return DerOffer(
            lo={u: lo[k] for k, u in enumerate(units)}, hi={u: hi[k] for k, u in enumerate(units)}, q=q,
            base_kw=base, sens={u: float(-head[k]) for k, u in enumerate(units)}, state=self.state(), rows=kept,
        )


def _box_lp(g: np.ndarray, value: np.ndarray, limit: np.ndarray, x_ref: np.ndarray, low: np.ndarray,
            high: np.ndarray, contain_ref: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The widest boxes [lo, hi] within [low, high] (per unit and period) such that every row
    g_r . (x - x_ref) <= limit_r - value_r holds for every x in the box; rows that the whole
    technical box satisfies are dropped. Returns lo, hi [unit, period] and the rows kept."""
    n_units, H = x_ref.shape
    if n_units == 0:
        return np.zeros((0, H)), np.zeros((0, H)), 0
    gp, gn = np.maximum(g, 0.0), np.maximum(-g, 0.0)
    slack = limit - value  # [row, period], >= 0
    # Worst case over the technical box, per row and period: sum_u max(g (high - ref), g (low - ref)).
    worst = gp @ (high - x_ref) + gn @ (x_ref - low)
    keep = worst > slack + 1e-9
    rows_t = [np.flatnonzero(keep[:, t]) for t in range(H)]
    n_rows = int(sum(len(r) for r in rows_t))
    # Columns: lo[u, t] at u * H + t, hi[u, t] at n_units * H + u * H + t.
    n = n_units * H
    span = high - low
    weight = np.divide(1.0, span, out=np.zeros_like(span), where=span > 1e-6)  # widths as shares of the ranges
    cost = np.concatenate([weight.ravel(), -weight.ravel()])
    lo_upper = np.minimum(x_ref, high) if contain_ref else high
    hi_lower = np.maximum(x_ref, low) if contain_ref else low
    col_lower = np.concatenate([low.ravel(), hi_lower.ravel()])
    col_upper = np.concatenate([lo_upper.ravel(), high.ravel()])
    entries_r, entries_c, entries_v, row_lo, row_hi = [], [], [], [], []
    # hi - lo >= 0
    idx = np.arange(n)
    entries_r += [idx, idx]
    entries_c += [idx, n + idx]
    entries_v += [-np.ones(n), np.ones(n)]
    row_lo.append(np.zeros(n))
    row_hi.append(np.full(n, np.inf))
    r0 = n
    for t, rows in enumerate(rows_t):
        for r in rows:
            used = np.flatnonzero(g[r] != 0.0)
            entries_r += [np.full(2 * len(used), r0)]
            entries_c += [np.concatenate([n + used * H + t, used * H + t])]
            entries_v += [np.concatenate([gp[r, used], -gn[r, used]])]
            row_lo.append(np.array([-np.inf]))
            row_hi.append(np.array([slack[r, t] + g[r] @ x_ref[:, t]]))
            r0 += 1
    matrix = sp.csc_matrix((np.concatenate(entries_v), (np.concatenate(entries_r), np.concatenate(entries_c))),
                           shape=(r0, 2 * n))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = 2 * n, r0
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, col_lower, col_upper
    lp.row_lower_, lp.row_upper_ = np.concatenate(row_lo), np.concatenate(row_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = matrix.indptr, matrix.indices, matrix.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    if h.passModel(lp) == highspy.HighsStatus.kError:
        raise RuntimeError("DER range validation: HiGHS rejected the LP")
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"DER range validation: {h.modelStatusToString(h.getModelStatus())}")
    sol = np.asarray(h.getSolution().col_value)
    lo, hi = sol[:n].reshape(n_units, H), sol[n:].reshape(n_units, H)
    return np.minimum(lo, hi), np.maximum(lo, hi), n_rows
