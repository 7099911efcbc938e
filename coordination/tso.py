"""The TSO's own look-ahead problem: the transmission DC-OPF with each feeder seen only
through its interface, built once and re-solved.

`TransmissionProblem` holds the DC-OPF of `coordination.transmission` and, per feeder, an
interface block whose head power p[t] (kW of one copy) enters the boundary bus balance
multiplier times (MW = multiplier p / 1000). What the TSO knows of the feeder behind the
interface depends on the scheme (`kind`), and none of it is distribution network data:

* "fixed"     p[t] is given (a schedule the DSO sent, or what it realised);
* "region"    p[t], q[t] a convex combination of the P-Q points the DSO reported for
              period t, the cost the same combination of the DSO's costs at those points
              (an upper bound of the DSO's convex cost between them);
* "ders"      the DERs themselves (technical data and state, no location), each unit's
              active power within the range its DSO validated, its reactive power at the
              DSO's value, and p[t] = base[t] - sum_u sens_u p_u[t] (the DSO's head power with
              every unit at zero, and each unit's head-power sensitivity);
* "proximal"  p[t] free, with kappa sum_t (p[t] / 1000 - center[t])^2 in the objective (ADMM;
              the LP envelope of `coordination.proximal`).

Data the TSO receives are mutable Params (cheap to re-send), except multipliers and
head-power sensitivities, which rewrite a few rows when they change.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo

from coordination.ders import FeederDers, build_units, unit_blocks
from coordination.ders.kind import set_series
from coordination.ders.registry import KINDS as KINDS_OF_DER
from coordination.network_data import TransmissionData
from coordination.objective import TRANSMISSION_TERMS, objective_terms, transmission_terms
from coordination.options import Options
from coordination.problem import PersistentProblem, der_cost_terms
from coordination.proximal import add_proximal, set_center
from coordination.transmission import add_dcopf, lmps, set_bus_load, set_generator_limits
from coordination.update import Update

__all__ = ["KINDS", "TRANSMISSION_TERMS", "Interface", "TransmissionProblem", "TsoSolve", "strip_locations"]

KINDS = ("fixed", "region", "ders", "proximal")


@dataclass
class Interface:
    """A feeder as the TSO sees it: where it attaches, how many copies, and (hybrid) its DERs."""

    bus: int
    multiplier: float = 1.0
    ders: FeederDers | None = None  # technical data only; `strip_locations` removes where they sit


def strip_locations(ders: FeederDers) -> FeederDers:
    """The DERs without their feeder buses: the TSO needs no distribution network data."""
    return FeederDers(**{kind.field: [dataclasses.replace(u, at="") for u in ders.of(kind)] for kind in KINDS_OF_DER})


@dataclass
class TsoSolve:
    """What one solve of the TSO's problem gives; a failed one its status and times only."""

    status: str
    optimal: bool = False
    objective: float | None = None
    terms: dict[str, float] = field(default_factory=dict)  # TRANSMISSION_TERMS (+ the interface terms of the kind)
    slacks: dict[str, float] = field(default_factory=dict)
    dispatch_mw: dict[str, np.ndarray] = field(default_factory=dict)
    boundary_mw: dict[int, np.ndarray] = field(default_factory=dict)
    p_kw: dict[str, np.ndarray] = field(default_factory=dict)  # interface head P per feeder (one copy)
    q_kvar: dict[str, np.ndarray] = field(default_factory=dict)  # "region" only
    unit_p_kw: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # "ders" only: feeder -> "kind/name" -> kW
    lmp: dict[int, np.ndarray] | None = None
    highs_s: float = 0.0
    solve_s: float = 0.0


class TransmissionProblem(PersistentProblem):
    """The TSO's problem for one scheme (see the module docstring)."""

    def __init__(self, data: TransmissionData, interfaces: Mapping[str, Interface], options: Options,
                 kind: str = "fixed", region_points: int = 0):
        if kind not in KINDS:
            raise ValueError(f"interface kind must be one of {', '.join(KINDS)} (got {kind!r})")
        self.kind = kind
        self.options = dataclasses.replace(options, battery_binaries="relaxed")
        self.interfaces = {name: dataclasses.replace(i, ders=strip_locations(i.ders) if i.ders else None)
                           for name, i in interfaces.items()}
        self.region_points = region_points
        super().__init__(self._build(data), self.options)

    # -- building ---------------------------------------------------------------------------
    def _build(self, data: TransmissionData) -> pyo.ConcreteModel:
        options = self.options
        periods = list(range(options.horizon))
        dt = options.dt_hours
        m = pyo.ConcreteModel(name=f"tso_{self.kind}")
        m.T = pyo.Set(initialize=periods, ordered=True)
        m.transmission = pyo.Block()
        tb = m.transmission
        add_dcopf(tb, data, periods, dt, boundary_buses=[i.bus for i in self.interfaces.values()],
                  losses=options.transmission_losses, loss_segments=options.loss_segments,
                  loss_flow_max_mw=options.loss_flow_max_mw, cost_segments=options.cost_segments)
        m.interfaces = pyo.Block(list(self.interfaces), rule=lambda ib, name: self._interface_block(ib, name, periods))
        self._at_bus: dict[int, list[str]] = {}
        for name, i in self.interfaces.items():
            self._at_bus.setdefault(i.bus, []).append(name)
        m.boundary = pyo.Constraint(tb.boundary_buses, m.T, rule=self._boundary_rule)
        objective_terms(m, self._terms(m))
        return m

    def _interface_block(self, ib: pyo.Block, name: str, periods: list[int]) -> None:
        ib.T = pyo.Set(initialize=periods, ordered=True)
        ib.p = pyo.Var(ib.T)
        if self.kind == "fixed":
            ib.p_set = pyo.Param(ib.T, mutable=True, initialize=0.0)
            ib.fixed = pyo.Constraint(ib.T, rule=lambda _, t: ib.p[t] == ib.p_set[t])
        elif self.kind == "region":
            ib.K = pyo.Set(initialize=range(self.region_points), ordered=True)
            ib.vp = pyo.Param(ib.K, ib.T, mutable=True, initialize=0.0)
            ib.vq = pyo.Param(ib.K, ib.T, mutable=True, initialize=0.0)
            ib.vc = pyo.Param(ib.K, ib.T, mutable=True, initialize=0.0)
            ib.lam = pyo.Var(ib.K, ib.T, bounds=(0.0, None))
            ib.q = pyo.Var(ib.T)
            ib.convex = pyo.Constraint(ib.T, rule=lambda _, t: pyo.quicksum(ib.lam[k, t] for k in ib.K) == 1)
            ib.p_point = pyo.Constraint(ib.T, rule=lambda _, t: ib.p[t] == pyo.quicksum(ib.vp[k, t] * ib.lam[k, t] for k in ib.K))
            ib.q_point = pyo.Constraint(ib.T, rule=lambda _, t: ib.q[t] == pyo.quicksum(ib.vq[k, t] * ib.lam[k, t] for k in ib.K))
        elif self.kind == "ders":
            self._der_blocks(ib, self.interfaces[name].ders, periods)
        else:
            add_proximal(ib, lambda t: ib.p[t] / 1000.0)

    def _der_blocks(self, ib: pyo.Block, ders: FeederDers, periods: list[int]) -> None:
        """The DER models of `coordination.ders` without a network: validated ranges, fixed Q."""
        build_units(ib, ders, periods, self.options, convex=True)
        blocks = {f"{kind.name}/{n}": d for kind, n, d in unit_blocks(ib)}
        ib.unit_blocks = blocks
        ib.units = pyo.Set(initialize=list(blocks), ordered=True)
        ib.lo = pyo.Param(ib.units, ib.T, mutable=True, initialize=0.0)
        ib.hi = pyo.Param(ib.units, ib.T, mutable=True, initialize=0.0)
        ib.box = pyo.Constraint(ib.units, ib.T, rule=lambda _, u, t: pyo.inequality(ib.lo[u, t], blocks[u].p_kw[t], ib.hi[u, t]))
        reactive = [f"{kind.name}/{n}" for kind, n, _ in unit_blocks(ib) if kind.reactive]
        ib.reactive_units = pyo.Set(initialize=reactive, ordered=True)
        ib.q_set = pyo.Param(ib.reactive_units, ib.T, mutable=True, initialize=0.0)
        ib.q_fixed = pyo.Constraint(ib.reactive_units, ib.T, rule=lambda _, u, t: blocks[u].q[t] == ib.q_set[u, t])
        ib.base = pyo.Param(ib.T, mutable=True, initialize=0.0)
        ib.sens = {u: 1.0 for u in blocks}
        ib.head_rule = lambda _, t: ib.p[t] == ib.base[t] - pyo.quicksum(ib.sens[u] * blocks[u].p_kw[t] for u in blocks)
        ib.head = pyo.Constraint(ib.T, rule=ib.head_rule)

    def _boundary_rule(self, m, bus, t):
        tb = m.transmission
        return tb.boundary_mw[bus, t] == pyo.quicksum(
            self.interfaces[name].multiplier * m.interfaces[name].p[t] for name in self._at_bus[bus]) / 1000.0

    def _terms(self, m: pyo.Block) -> dict[str, object]:
        terms = transmission_terms(m.transmission, self.options.penalties)
        mult = {name: float(i.multiplier) for name, i in self.interfaces.items()}
        blocks = list(m.interfaces.items())
        if self.kind == "region":
            terms["interface_cost"] = pyo.quicksum(mult[n] * ib.vc[k, t] * ib.lam[k, t] for n, ib in blocks for k in ib.K for t in ib.T)
        elif self.kind == "ders":
            terms.update(der_cost_terms([(ib, mult[n]) for n, ib in blocks], self.options, tso=True))
        elif self.kind == "proximal":
            terms["proximal"] = pyo.quicksum(ib.proximal for _, ib in blocks)
        return terms

    # -- data -------------------------------------------------------------------------------
    def update(self, data: Update) -> None:
        """The transmission share of the new data (feeder data are the DSOs')."""
        tb = self.model.transmission
        if data.bus_load_mw is not None:
            set_bus_load(tb, data.bus_load_mw)
        set_generator_limits(tb, data.gen_p_max_mw, data.gen_p_min_mw, data.gen_p_prev_mw)

    def set_multipliers(self, multipliers: Mapping[str, float]) -> None:
        """New copy counts: the boundary rows and the interface cost terms are rewritten."""
        changed = {n: float(k) for n, k in multipliers.items() if float(k) != self.interfaces[n].multiplier}
        if not changed:
            return
        m = self.model
        for name, k in changed.items():
            self.interfaces[name].multiplier = k
        buses = {self.interfaces[n].bus for n in changed}
        rows = []
        for bus in buses:
            for t in m.T:
                con = m.boundary[bus, t]
                con.set_value(self._boundary_rule(m, bus, t))
                rows.append(con)
        self.solver.replace_constraints(rows)
        for name, expr in self._terms(m).items():
            m.cost[name].set_value(expr)
        self.solver.replace_objective()

    def set_fixed(self, p_kw: Mapping[str, np.ndarray]) -> None:
        for name, p in p_kw.items():
            set_series(self.model.interfaces[name].p_set, p, len(self.model.T))

    def set_region(self, name: str, points_kw: np.ndarray, costs: np.ndarray) -> None:
        """points_kw [period, point, (P, Q)] and costs [period, point] of one interface."""
        ib = self.model.interfaces[name]
        points_kw = np.asarray(points_kw, dtype=float)
        costs = np.asarray(costs, dtype=float)
        for t in ib.T:
            for k in ib.K:
                ib.vp[k, t] = points_kw[t, k, 0]
                ib.vq[k, t] = points_kw[t, k, 1]
                ib.vc[k, t] = costs[t, k]

    def set_ders(self, name: str, lo: Mapping[str, np.ndarray], hi: Mapping[str, np.ndarray],
                 q: Mapping[str, np.ndarray], base_kw: np.ndarray, sens: Mapping[str, float],
                 state: Mapping[str, Mapping[str, object]]) -> None:
        """Validated ranges, the DSO's reactive powers, base head power and sensitivities, and
        the units' state (PV available kW, battery soc0 and soc_target, EV plugged and
        energy_required, flexible baseline) of one interface; units keyed "kind/name"."""
        ib = self.model.interfaces[name]
        H = len(ib.T)
        for u in ib.units:
            rows = (np.broadcast_to(np.asarray(v[u], dtype=float), (H,)) for v in (lo, hi))
            for t, a, b in zip(ib.T, *rows):
                ib.lo[u, t] = float(min(a, b))
                ib.hi[u, t] = float(max(a, b))
        for u in ib.reactive_units:
            for t, v in zip(ib.T, np.broadcast_to(np.asarray(q[u], dtype=float), (H,))):
                ib.q_set[u, t] = float(v)
        set_series(ib.base, base_kw, H)
        for u, values in state.items():
            d = ib.unit_blocks[u]
            for key, value in values.items():
                param = d.component(key)
                if param.is_indexed():
                    set_series(param, value, H)
                else:
                    param.set_value(float(value))
        if any(abs(float(sens[u]) - ib.sens[u]) > 1e-12 for u in ib.units):
            ib.sens = {u: float(sens[u]) for u in ib.units}
            for t in ib.T:
                ib.head[t].set_value(ib.head_rule(ib, t))
            self.solver.replace_constraints([ib.head[t] for t in ib.T])

    def set_proximal(self, kappa: Mapping[str, float], center_kw: Mapping[str, np.ndarray]) -> None:
        """kappa (currency per MW^2 of one copy's head power) and the center (kW) per interface."""
        for name, k in kappa.items():
            ib = self.model.interfaces[name]
            ib.kappa.set_value(float(k))
            set_center(ib, np.asarray(center_kw[name], dtype=float) / 1000.0)

    # -- solving ----------------------------------------------------------------------------
    def solve(self) -> TsoSolve:
        start = time.perf_counter()
        stats = self.solver.solve()
        m = self.model
        tb = m.transmission
        if stats.status not in ("optimal", "time limit (feasible)"):
            return TsoSolve(stats.status, highs_s=stats.highs_s, solve_s=time.perf_counter() - start)
        plan = self.plan_after(stats, self._read_plan)
        x = self.solver.solution()
        lmp = None
        try:
            lmp = lmps(self.solver.duals([tb.power_balance]), tb, self.options.dt_hours)
        except RuntimeError:  # no duals (a MIP)
            pass
        return TsoSolve(
            status=stats.status, optimal=stats.optimal, objective=stats.objective,
            terms={name: form.value(x) for name, form in plan["terms"].items()},
            slacks={name: form.value(x) for name, form in plan["slacks"].items()},
            dispatch_mw=dict(zip(tb.gens, x[plan["pg"]])),
            boundary_mw=dict(zip(tb.boundary_buses, x[plan["boundary"]])),
            p_kw={n: x[c] for n, c in plan["p"].items()},
            q_kvar={n: x[c] for n, c in plan["q"].items()},
            unit_p_kw={n: {u: np.array([f.value(x) for f in forms]) for u, forms in units.items()}
                       for n, units in plan["units"].items()},
            lmp=lmp, highs_s=stats.highs_s, solve_s=time.perf_counter() - start,
        )

    def _read_plan(self) -> dict:
        m, s = self.model, self.solver
        tb = m.transmission
        H = len(m.T)
        return {
            "terms": {name: s.linear(m.cost[name]) for name in m.cost_terms if name != "proximal"},
            "slacks": {"unserved_mwh": s.linear(tb.unserved_mwh), "spilled_mwh": s.linear(tb.spilled_mwh),
                       "transmission_overload_mwh": s.linear(tb.flow_violation)},
            "pg": s.positions(tb.pg[g, t] for g in tb.gens for t in m.T).reshape(len(tb.gens), H),
            "boundary": s.positions(tb.boundary_mw[b, t] for b in tb.boundary_buses for t in m.T).reshape(-1, H),
            "p": {n: s.positions(ib.p) for n, ib in m.interfaces.items()},
            "q": {n: s.positions(ib.q) for n, ib in m.interfaces.items() if self.kind == "region"},
            "units": {n: {u: [s.linear(ib.unit_blocks[u].p_kw[t]) for t in ib.T] for u in ib.units}
                      for n, ib in m.interfaces.items() if self.kind == "ders"},
        }
