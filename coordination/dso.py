"""A DSO's own look-ahead problem over one feeder, built once and re-solved.

`FeederProblem` holds one feeder block as the centralized problem builds it
(`centralized.build_feeder_block`: LinDist3Flow, DERs, soft limits, head voltage), the
interface powers p_if[t], q_if[t] (= the feeder head P and Q of one copy, kW and kvar)
and the DSO's own cost terms, which carry the same names as in the centralized
objective. Optional terms let the same model serve each role a scheme gives a DSO; their
data are mutable Params, so switching role or data is a re-solve, not a rebuild:

* `price`        an energy price at the interface, + price[t] p_if[t] dt (currency per MWh):
                 a DSO answering a price signal (dso_first);
* `head_target`  following an interface target: p_if - target = up - down, with the
                 deviation priced at `weight_target` (0 = not following) (dso_managed);
* `der_targets`  following per-unit active-power targets the same way, with a token price
                 on DER reactive power so Q is used only where the network needs it (hybrid);
* `directions`   maximising dir_p[t] p_if[t] + dir_q[t] q_if[t], with the use of every soft
                 limit capped per period (P-Q regions, `coordination.flexibility`);
* `robust`       the intertemporal constraints (battery SOC, EV energy, energy-neutral load
                 shifting) replaced by per-period bands on each unit's power (regions that hold
                 in every period at once);
* `proximal`     + kappa sum_t (p_if[t] / 1000 - center[t])^2 (MW), the augmented-Lagrangian term
                 of ADMM, as the LP envelope of `coordination.proximal`.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyomo.environ as pyo

from coordination.centralized import FeederSetup, Options, build_feeder_block, feeder_slacks
from coordination.ders import unit_blocks
from coordination.ders.kind import set_series
from coordination.objective import feeder_network_terms, in_order, objective_terms
from coordination.problem import PersistentProblem, der_cost_terms, der_period_cost, read_units, unit_columns
from coordination.proximal import add_proximal, set_center
from coordination.solver import SolveStats
from coordination.update import FeederUpdate

FEEDER_SLACKS = ("feeder_overload_kvah", "voltage_violation_pu2h", "soc_shortfall_kwh", "ev_unmet_kwh")
NO_CAP = 1e9  # a violation cap that does not bind
REACTIVE_PRICE = 0.01  # currency per Mvarh of DER reactive power (hybrid's DSO): breaks ties only


def feeder_cost_terms(fb: pyo.Block, options: Options) -> dict[str, object]:
    """The cost terms of one copy of a feeder, as `centralized.cost_terms` prices them."""
    return in_order({**feeder_network_terms([(fb, None)], options.penalties), **der_cost_terms([(fb, None)], options)})


def period_cost(fb: pyo.Block, t: int, options: Options) -> object:
    """The part of the feeder's cost incurred in period t (all terms but the horizon-end
    SOC and EV shortfalls)."""
    pen, dt = options.penalties, options.dt_hours
    expr = der_period_cost(fb, t, options)
    if fb.component("limited_flows") is not None:
        expr += pen.feeder_overload / 1000.0 * dt * pyo.quicksum(fb.s_flow[n, t] for n in fb.limited_flows)
    expr += pen.voltage * dt * pyo.quicksum(fb.s_v_hi[n, t] + fb.s_v_lo[n, t] for n in fb.limited_nodes)
    return expr


@dataclasses.dataclass
class FeederSolve:
    """What one solve of a FeederProblem gives (arrays over the horizon, one copy of the feeder)."""

    status: str
    optimal: bool
    objective: float | None  # of the model solved, interface terms included
    p_kw: np.ndarray  # head P
    q_kvar: np.ndarray
    terms: dict[str, float]  # the feeder's cost terms (`feeder_cost_terms`)
    slacks: dict[str, float]
    highs_s: float
    solve_s: float
    setpoints: dict[str, dict[str, np.ndarray]] | None = None  # unit -> {"p_kw", "q_kvar", ...}
    voltages: dict[tuple[str, int], np.ndarray] | None = None
    mip_fallback: bool = False

    @property
    def cost(self) -> float:
        return float(sum(self.terms.values()))


class FeederProblem(PersistentProblem):
    """One feeder's DSO problem (see the module docstring); `update`, then `solve`."""

    def __init__(self, setup: FeederSetup, options: Options, *, price: bool = False, head_target: bool = False,
                 der_targets: bool = False, directions: bool = False, robust: bool = False, proximal: bool = False,
                 time_limit_s: float | None = None):
        convex = directions or robust or proximal
        if convex:
            # Regions depend on net powers only; ADMM needs a convex problem.
            options = dataclasses.replace(options, battery_binaries="relaxed")
        self.setup = setup
        self.flags = {"price": price, "head_target": head_target, "der_targets": der_targets,
                      "directions": directions, "robust": robust, "proximal": proximal}
        model = self._build(options, convex)
        super().__init__(model, options, time_limit_s, batteries=list(model.feeder.battery.values()))
        self.last: FeederSolve | None = None
        self._last_stats: tuple[SolveStats, bool] | None = None
        self.highs_total = 0.0  # seconds in HiGHS, for whoever reads and resets it

    # -- building ---------------------------------------------------------------------------
    def _build(self, options: Options, convex: bool) -> pyo.ConcreteModel:
        setup, flags = self.setup, self.flags
        periods = list(range(options.horizon))
        dt = options.dt_hours
        m = pyo.ConcreteModel(name=f"dso_{setup.data.name}")
        m.T = pyo.Set(initialize=periods, ordered=True)
        m.feeder = pyo.Block()
        fb = m.feeder
        build_feeder_block(fb, setup, periods, options, convex)
        m.p_if = pyo.Var(m.T)
        m.q_if = pyo.Var(m.T)
        m.p_link = pyo.Constraint(m.T, rule=lambda _, t: m.p_if[t] == fb.p_sub[t])
        m.q_link = pyo.Constraint(m.T, rule=lambda _, t: m.q_if[t] == fb.q_sub[t])
        self.units = unit_blocks(fb)
        block_of = {f"{kind.name}/{name}": d for kind, name, d in self.units}
        keys = list(block_of)
        terms = feeder_cost_terms(fb, options)
        if flags["price"]:
            m.price = pyo.Param(m.T, mutable=True, initialize=0.0)  # currency per MWh at the head
            terms["interface_energy"] = dt / 1000.0 * pyo.quicksum(m.price[t] * m.p_if[t] for t in m.T)
        if flags["head_target"]:
            m.target_p = pyo.Param(m.T, mutable=True, initialize=0.0)
            m.target_q = pyo.Param(m.T, mutable=True, initialize=0.0)
            m.weight_target = pyo.Param(mutable=True, initialize=0.0)  # currency per MWh (Mvarh) missed
            m.dev = pyo.Var(["p_up", "p_down", "q_up", "q_down"], m.T, bounds=(0.0, None))
            m.follow_p = pyo.Constraint(m.T, rule=lambda _, t: m.p_if[t] - m.target_p[t] == m.dev["p_up", t] - m.dev["p_down", t])
            m.follow_q = pyo.Constraint(m.T, rule=lambda _, t: m.q_if[t] - m.target_q[t] == m.dev["q_up", t] - m.dev["q_down", t])
            terms["interface_deviation"] = dt / 1000.0 * pyo.quicksum(m.weight_target * v for v in m.dev.values())
        if flags["der_targets"]:
            m.der_units = pyo.Set(initialize=keys, ordered=True)
            m.der_target = pyo.Param(m.der_units, m.T, mutable=True, initialize=0.0)
            m.weight_der = pyo.Param(mutable=True, initialize=0.0)
            m.der_up = pyo.Var(m.der_units, m.T, bounds=(0.0, None))
            m.der_down = pyo.Var(m.der_units, m.T, bounds=(0.0, None))
            m.follow_der = pyo.Constraint(m.der_units, m.T, rule=lambda _, u, t: block_of[u].p_kw[t] - m.der_target[u, t]
                                          == m.der_up[u, t] - m.der_down[u, t])
            terms["der_deviation"] = dt / 1000.0 * pyo.quicksum(m.weight_der * (m.der_up[u, t] + m.der_down[u, t])
                                                                for u in m.der_units for t in m.T)
            # Reactive power is free in the DSO's cost, so its own optimum may park inverters at
            # any kvar, which would shrink the active-power ranges it reserves; a small price
            # keeps Q at what the network needs.
            reactive = [f"{kind.name}/{name}" for kind, name, _ in self.units if kind.reactive]
            m.reactive_units = pyo.Set(initialize=reactive, ordered=True)
            m.q_abs = pyo.Var(m.reactive_units, m.T, bounds=(0.0, None))
            m.q_abs_up = pyo.Constraint(m.reactive_units, m.T, rule=lambda _, u, t: m.q_abs[u, t] >= block_of[u].q[t])
            m.q_abs_down = pyo.Constraint(m.reactive_units, m.T, rule=lambda _, u, t: m.q_abs[u, t] >= -block_of[u].q[t])
            terms["reactive_use"] = REACTIVE_PRICE * dt / 1000.0 * pyo.quicksum(m.q_abs[u, t] for u in m.reactive_units for t in m.T)
        if flags["directions"]:
            m.dir_p = pyo.Param(m.T, mutable=True, initialize=0.0)
            m.dir_q = pyo.Param(m.T, mutable=True, initialize=0.0)
            terms["direction"] = -pyo.quicksum(m.dir_p[t] * m.p_if[t] + m.dir_q[t] * m.q_if[t] for t in m.T)
            m.cap_voltage = pyo.Param(m.T, mutable=True, initialize=NO_CAP)
            m.voltage_cap = pyo.Constraint(m.T, rule=lambda _, t: pyo.quicksum(
                fb.s_v_hi[n, t] + fb.s_v_lo[n, t] for n in fb.limited_nodes) <= m.cap_voltage[t])
            m.cap_flow = pyo.Param(m.T, mutable=True, initialize=NO_CAP)
            if fb.component("limited_flows") is not None and len(fb.limited_flows):
                m.flow_cap = pyo.Constraint(m.T, rule=lambda _, t: pyo.quicksum(fb.s_flow[n, t] for n in fb.limited_flows)
                                            <= m.cap_flow[t])
            if not flags["robust"]:
                m.cap_soc = pyo.Param(mutable=True, initialize=NO_CAP)
                m.cap_ev = pyo.Param(mutable=True, initialize=NO_CAP)
                if len(fb.battery):
                    m.soc_cap = pyo.Constraint(expr=pyo.quicksum(d.soc_shortfall_kwh for d in fb.battery.values()) <= m.cap_soc)
                if len(fb.ev):
                    m.ev_cap = pyo.Constraint(expr=pyo.quicksum(d.unmet_kwh for d in fb.ev.values()) <= m.cap_ev)
        if flags["robust"]:
            for kind, _, d in self.units:
                for name in kind.intertemporal:
                    con = d.component(name)
                    if con is not None:
                        con.deactivate()
            banded = [f"{kind.name}/{name}" for kind, name, _ in self.units if kind.banded]
            m.band_units = pyo.Set(initialize=banded, ordered=True)
            m.band_lo = pyo.Param(m.band_units, m.T, mutable=True, initialize=-NO_CAP)
            m.band_hi = pyo.Param(m.band_units, m.T, mutable=True, initialize=NO_CAP)
            m.band = pyo.Constraint(m.band_units, m.T, rule=lambda _, u, t: pyo.inequality(
                m.band_lo[u, t], block_of[u].p_kw[t], m.band_hi[u, t]))
        if flags["proximal"]:
            add_proximal(m, lambda t: m.p_if[t] / 1000.0)
            terms["proximal"] = m.proximal
        objective_terms(m, terms)
        return m

    # -- data -------------------------------------------------------------------------------
    def update(self, data: FeederUpdate | None = None, /, **keywords) -> None:
        """This feeder's share of the new data (a `FeederUpdate`, or its keywords)."""
        data = data if data is not None else FeederUpdate.of(**keywords)
        self.apply_feeder(self.model.feeder, self.setup.data, data)

    def set_params(self, **values) -> None:
        """Write role data: price, target_p, target_q, weight_target, weight_der, dir_p, dir_q,
        cap_voltage, cap_flow, cap_soc, cap_ev, kappa, center (MW) (arrays over the horizon or
        numbers); der_target and band_lo/band_hi as {unit key: array}."""
        m = self.model
        H = len(m.T)
        for name, value in values.items():
            if name == "center":
                set_center(m, value)
                continue
            param = m.component(name)
            if name in ("der_target", "band_lo", "band_hi"):
                for unit, row in value.items():
                    row = np.broadcast_to(np.asarray(row, dtype=float), (H,))
                    for t, v in zip(m.T, row):
                        param[unit, t] = float(v)
            elif param.is_indexed():
                set_series(param, value, H)
            else:
                param.set_value(float(value))

    # -- solving ----------------------------------------------------------------------------
    def solve(self, full: bool = True, changed: str = "all") -> FeederSolve:
        """Solve with the data in the model now; `full` also reads set-points and voltages.
        `changed` says what changed since the last solve, so only that is re-sent to HiGHS:
        "all", "objective" (directions, prices, weights, kappa) or "proximal" (the ADMM
        center and kappa)."""
        start = time.perf_counter()
        if changed == "all" or self.solver.highs is None:
            stats = self.solver.solve()
        else:
            if changed == "proximal":
                self.solver.push_rows([self.model.prox_cut])
            self.solver.push_objective()
            stats = self.solver.solve(push=False)
        stats, fallback = self.directions.enforce(stats)
        self.highs_total += stats.highs_s
        if stats.status not in ("optimal", "time limit (feasible)"):
            H = len(self.model.T)
            self.last = FeederSolve(stats.status, False, None, np.full(H, np.nan), np.full(H, np.nan), {}, {},
                                    stats.highs_s, time.perf_counter() - start)
            return self.last
        self.plan_after(stats, self._read_plan)
        self._last_stats = (stats, fallback)
        self.last = self._read(stats, full, fallback, start)
        return self.last

    def reread(self) -> FeederSolve:
        """The last solution again, read in full (set-points and voltages)."""
        stats, fallback = self._last_stats
        self.last = self._read(stats, True, fallback, time.perf_counter())
        return self.last

    def _read_plan(self) -> dict:
        m, s = self.model, self.solver
        fb = m.feeder
        H = len(m.T)
        source = self.setup.data.source_bus
        nodes = [n for n in fb.nodes if n[0] != source]
        terms = feeder_cost_terms(fb, self.options)
        return {
            "terms": {name: s.linear(expr) for name, expr in terms.items()},
            "slacks": {name: s.linear(expr) for name, expr in feeder_slacks([fb]).items()},
            "p_if": s.positions(m.p_if),
            "q_if": s.positions(m.q_if),
            "nodes": nodes,
            "w": s.positions(fb.w[bus, ph, t] for bus, ph in nodes for t in m.T).reshape(len(nodes), H),
            "units": unit_columns(fb, s.positions),
        }

    def _read(self, stats: SolveStats, full: bool, fallback: bool, start: float) -> FeederSolve:
        plan = self._plan
        x = self.solver.solution()
        out = FeederSolve(
            status=stats.status, optimal=stats.optimal, objective=stats.objective,
            p_kw=x[plan["p_if"]].copy(), q_kvar=x[plan["q_if"]].copy(),
            terms={name: form.value(x) for name, form in plan["terms"].items()},
            slacks={name: form.value(x) for name, form in plan["slacks"].items()},
            highs_s=stats.highs_s, solve_s=0.0, mip_fallback=fallback,
        )
        if full:
            out.voltages = dict(zip(plan["nodes"], np.sqrt(np.maximum(x[plan["w"]], 0.0))))
            out.setpoints = read_units(plan["units"], x)
        out.solve_s = time.perf_counter() - start
        return out

    def unit_power(self) -> dict[str, np.ndarray]:
        """Each unit's injection p_kw (+ into the grid) in the last solution, by "kind/name"."""
        return self._unit_values("p_kw")

    def unit_reactive(self) -> dict[str, np.ndarray]:
        """Each unit's reactive injection q_kvar in the last solution, by "kind/name"."""
        return self._unit_values("q_kvar")

    def _unit_values(self, expression: str) -> dict[str, np.ndarray]:
        s = self.solver
        forms = self.forms(expression, lambda: {f"{kind.name}/{name}": [s.linear(d.component(expression)[t]) for t in d.T]
                                                for kind, name, d in self.units})
        x = s.solution()
        return {key: np.array([f.value(x) for f in unit]) for key, unit in forms.items()}

    def period_costs(self) -> np.ndarray:
        """The feeder cost incurred in each period in the last solution (`period_cost`)."""
        fb = self.model.feeder
        forms = self.forms("period_cost", lambda: [self.solver.linear(period_cost(fb, t, self.options)) for t in self.model.T])
        x = self.solver.solution()
        return np.array([f.value(x) for f in forms])

    def period_violations(self) -> tuple[np.ndarray, np.ndarray]:
        """Use of the voltage slacks (pu^2, summed over nodes) and of the branch-flow slacks
        (kVA, summed over branch phases) per period in the last solution."""
        volt, flow = self.forms("violations", self._violation_columns)
        x = self.solver.solution()
        return x[volt].sum(axis=0), (x[flow].sum(axis=0) if flow.size else np.zeros(len(self.model.T)))

    def _violation_columns(self) -> tuple[np.ndarray, np.ndarray]:
        fb, s, H = self.model.feeder, self.solver, len(self.model.T)
        nodes = list(fb.limited_nodes)
        volt = np.concatenate([s.positions(fb.s_v_hi[n, t] for n in nodes for t in fb.T),
                               s.positions(fb.s_v_lo[n, t] for n in nodes for t in fb.T)]).reshape(-1, H)
        flows = list(fb.limited_flows) if fb.component("limited_flows") is not None else []
        flow = s.positions(fb.s_flow[n, t] for n in flows for t in fb.T).reshape(-1, H) if flows else np.zeros((0, H), int)
        return volt, flow

    def horizon_shortfalls(self) -> tuple[float, float]:
        """Battery SOC shortfall and unmet EV energy (kWh) in the last solution."""
        return self.last.slacks["soc_shortfall_kwh"], self.last.slacks["ev_unmet_kwh"]

    def battery_soc(self) -> dict[str, np.ndarray]:
        """Each battery's SOC at the end of every period in the last solution."""
        x = self.solver.solution()
        return {name: x[self.solver.positions(d.soc)] for name, d in self.model.feeder.battery.items()}

    def values(self, name: str) -> np.ndarray:
        """Solution values of one indexed Var of the model or its feeder block, in index order."""
        var = self.model.component(name)
        if var is None:
            var = self.model.feeder.component(name)
        return self.solver.solution()[self.solver.positions(var)]
