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
import gc
import time
from collections.abc import Mapping

import numpy as np
import pyomo.environ as pyo

from coordination.centralized import FeederSetup, Options, _set_series, build_feeder_block
from coordination.distribution import set_held_voltage, set_load_forecast, set_node_loads, set_ratios
from coordination.interface import set_head_voltage
from coordination.network_data import FeederData
from coordination.objective import objective_terms
from coordination.proximal import add_proximal, set_center
from coordination.solver import BatteryDirections, PersistentHighs, SolveStats

# The DSO's share of the centralized objective's terms (per copy of the feeder).
FEEDER_TERMS = ("curtailment", "battery_degradation", "load_shift", "reactive", "penalty_feeder_overload",
                "penalty_voltage", "penalty_soc_target", "penalty_ev_unmet")
FEEDER_SLACKS = ("feeder_overload_kvah", "voltage_violation_pu2h", "soc_shortfall_kwh", "ev_unmet_kwh")
NO_CAP = 1e9  # a violation cap that does not bind
REACTIVE_PRICE = 0.01  # currency per Mvarh of DER reactive power (hybrid's DSO): breaks ties only


def feeder_cost_terms(fb: pyo.Block, options: Options) -> dict[str, object]:
    """The cost terms of one copy of a feeder, as `centralized.cost_terms` prices them."""
    prices, pen = options.prices, options.penalties

    def der_sum(kind: str, measure: str):
        return pyo.quicksum(getattr(d, measure) for d in getattr(fb, kind).values())

    return {
        "curtailment": prices.curtailment / 1000.0 * der_sum("pv", "curtailed_kwh"),
        "battery_degradation": prices.battery_degradation / 1000.0 * der_sum("battery", "throughput_kwh"),
        "load_shift": prices.load_shift / 1000.0 * der_sum("flexible", "shifted_kwh"),
        "reactive": prices.reactive / 1000.0 * (der_sum("pv", "reactive_kvarh") + der_sum("battery", "reactive_kvarh")),
        "penalty_feeder_overload": pen.feeder_overload / 1000.0 * fb.flow_violation,
        "penalty_voltage": pen.voltage * fb.voltage_violation,
        "penalty_soc_target": pen.soc_target / 1000.0 * der_sum("battery", "soc_shortfall_kwh"),
        "penalty_ev_unmet": pen.ev_unmet / 1000.0 * der_sum("ev", "unmet_kwh"),
    }


def period_cost(fb: pyo.Block, t: int, options: Options) -> object:
    """The part of the feeder's cost incurred in period t (all terms but the horizon-end
    SOC and EV shortfalls)."""
    prices, pen, dt = options.prices, options.penalties, options.dt_hours
    expr = prices.curtailment / 1000.0 * dt * pyo.quicksum(d.available[t] - d.p[t] for d in fb.pv.values())
    expr += prices.battery_degradation / 1000.0 * dt * pyo.quicksum(d.p_ch[t] + d.p_dis[t] for d in fb.battery.values())
    expr += prices.load_shift / 1000.0 * dt * pyo.quicksum(d.up[t] + d.down[t] for d in fb.flexible.values())
    expr += prices.reactive / 1000.0 * dt * pyo.quicksum(d.q_abs[t] for kind in ("pv", "battery") for d in getattr(fb, kind).values())
    if hasattr(fb, "limited_flows"):
        expr += pen.feeder_overload / 1000.0 * dt * pyo.quicksum(fb.s_flow[n, t] for n in fb.limited_flows)
    expr += pen.voltage * dt * pyo.quicksum(fb.s_v_hi[n, t] + fb.s_v_lo[n, t] for n in fb.limited_nodes)
    return expr


def unit_blocks(fb: pyo.Block) -> list[tuple[str, str, pyo.Block]]:
    """(kind, name, block) of every DER of a feeder block, in a fixed order."""
    return [(kind, name, d) for kind in ("pv", "battery", "flexible", "ev") for name, d in getattr(fb, kind).items()]


@dataclasses.dataclass
class FeederSolve:
    """What one solve of a FeederProblem gives (arrays over the horizon, one copy of the feeder)."""

    status: str
    optimal: bool
    objective: float | None  # of the model solved, interface terms included
    p_kw: np.ndarray  # head P
    q_kvar: np.ndarray
    terms: dict[str, float]  # FEEDER_TERMS
    slacks: dict[str, float]
    highs_s: float
    solve_s: float
    setpoints: dict[str, dict[str, np.ndarray]] | None = None  # unit -> {"p_kw", "q_kvar", ...}
    voltages: dict[tuple[str, int], np.ndarray] | None = None
    mip_fallback: bool = False

    @property
    def cost(self) -> float:
        return float(sum(self.terms.values()))


class FeederProblem:
    """One feeder's DSO problem (see the module docstring); `update`, then `solve`."""

    def __init__(self, setup: FeederSetup, options: Options, *, price: bool = False, head_target: bool = False,
                 der_targets: bool = False, directions: bool = False, robust: bool = False, proximal: bool = False,
                 time_limit_s: float | None = None):
        if directions or robust or proximal:
            # Regions depend on net powers only; ADMM needs a convex problem.
            options = dataclasses.replace(options, battery_binaries="relaxed")
        self.setup = setup
        self.options = options
        self.flags = {"price": price, "head_target": head_target, "der_targets": der_targets,
                      "directions": directions, "robust": robust, "proximal": proximal}
        self.model = self._build()
        self.solver = PersistentHighs(self.model, time_limit_s if time_limit_s is not None else options.time_limit_s,
                                      options.mip_rel_gap)
        self._plan: dict | None = None
        self.directions = BatteryDirections(self.solver, list(self.model.feeder.battery.values()), options.battery_binaries)
        self.last: FeederSolve | None = None
        self.highs_total = 0.0  # seconds in HiGHS, for whoever reads and resets it
        m = self.model
        self.n_variables = sum(1 for _ in m.component_data_objects(pyo.Var, active=True))
        self.n_constraints = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))

    # -- building ---------------------------------------------------------------------------
    def _build(self) -> pyo.ConcreteModel:
        setup, options, flags = self.setup, self.options, self.flags
        periods = list(range(options.horizon))
        dt = options.dt_hours
        m = pyo.ConcreteModel(name=f"dso_{setup.data.name}")
        m.T = pyo.Set(initialize=periods, ordered=True)
        m.feeder = pyo.Block()
        fb = m.feeder
        build_feeder_block(fb, setup, periods, options)
        m.p_if = pyo.Var(m.T)
        m.q_if = pyo.Var(m.T)
        m.p_link = pyo.Constraint(m.T, rule=lambda _, t: m.p_if[t] == fb.p_sub[t])
        m.q_link = pyo.Constraint(m.T, rule=lambda _, t: m.q_if[t] == fb.q_sub[t])
        self.units = unit_blocks(fb)
        keys = [f"{kind}/{name}" for kind, name, _ in self.units]
        block_of = {f"{kind}/{name}": d for kind, name, d in self.units}
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
            reactive = [u for u in keys if u.startswith(("pv/", "battery/"))]
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
            if hasattr(fb, "limited_flows") and len(fb.limited_flows):
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
                for con in {"battery": ("soc_dynamics", "terminal_soc"), "ev": ("energy",),
                            "flexible": ("energy_neutral",)}.get(kind, ()):
                    getattr(d, con).deactivate()
            banded = [u for u in keys if not u.startswith("pv/")]
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
    def update(self, *, load_levels: np.ndarray | None = None,
               node_loads: tuple[list, np.ndarray, np.ndarray] | None = None,
               pv_available_kw: Mapping[str, object] | None = None, battery_soc: Mapping[str, float] | None = None,
               battery_soc_target: Mapping[str, float] | None = None, ev_plugged: Mapping[str, object] | None = None,
               ev_energy_kwh: Mapping[str, float] | None = None,
               flexible_baseline_kw: Mapping[str, object] | None = None, head_voltage: object = None,
               ratios: FeederData | None = None, held_voltage: Mapping | None = None) -> None:
        """This feeder's share of `CentralizedProblem.update`'s data (same meaning and units)."""
        fb = self.model.feeder
        H = len(self.model.T)
        if load_levels is not None:
            set_load_forecast(fb, self.setup.data, load_levels)
        if node_loads is not None:
            set_node_loads(fb, *node_loads)
        if ratios is not None:
            self.solver.update_coefficients(set_ratios(fb, ratios))
        if held_voltage is not None:
            set_held_voltage(fb, held_voltage)
        if head_voltage is not None:
            set_head_voltage(fb, head_voltage)
        for unit, values in (pv_available_kw or {}).items():
            _set_series(fb.pv[unit].available, values, H)
        specs = {b.name: b for b in self.setup.ders.batteries}
        for unit, soc in (battery_soc or {}).items():
            fb.battery[unit].soc0 = float(min(max(soc, specs[unit].soc_min), specs[unit].soc_max))
        for unit, soc in (battery_soc_target or {}).items():
            fb.battery[unit].soc_target = float(soc)
        for unit, values in (ev_plugged or {}).items():
            _set_series(fb.ev[unit].plugged, values, H)
        for unit, kwh in (ev_energy_kwh or {}).items():
            fb.ev[unit].energy_required = float(kwh)
        for unit, values in (flexible_baseline_kw or {}).items():
            _set_series(fb.flexible[unit].baseline, values, H)

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
            param = getattr(m, name)
            if name in ("der_target", "band_lo", "band_hi"):
                for unit, row in value.items():
                    row = np.broadcast_to(np.asarray(row, dtype=float), (H,))
                    for t, v in zip(m.T, row):
                        param[unit, t] = float(v)
            elif param.is_indexed():
                _set_series(param, value, H)
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
        if self._plan is None or stats.first:
            self._plan = self._read_plan()
            if self.options.freeze_gc:
                gc.collect()
                gc.freeze()
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
        units = {}
        for kind, name, d in self.units:
            if kind == "pv":
                cols = {"p_kw": s.positions(d.p), "q_kvar": s.positions(d.q)}
            elif kind == "battery":
                cols = {"charge_kw": s.positions(d.p_ch), "discharge_kw": s.positions(d.p_dis),
                        "q_kvar": s.positions(d.q)}
                if not self.flags["robust"]:  # no SOC dynamics there: the SOC is not in the model
                    cols["soc"] = s.positions(d.soc)
            elif kind == "flexible":
                cols = {"up": s.positions(d.up), "down": s.positions(d.down)}
            else:
                cols = {"p_kw": s.positions(d.p)}
            units[name] = (kind, cols)
        terms = feeder_cost_terms(fb, self.options)
        return {
            "terms": {name: s.linear(terms[name]) for name in FEEDER_TERMS},
            "slacks": {
                "feeder_overload_kvah": s.linear(fb.flow_violation),
                "voltage_violation_pu2h": s.linear(fb.voltage_violation),
                "soc_shortfall_kwh": s.linear(pyo.quicksum(d.soc_shortfall_kwh for d in fb.battery.values())),
                "ev_unmet_kwh": s.linear(pyo.quicksum(d.unmet_kwh for d in fb.ev.values())),
            },
            "p_if": s.positions(m.p_if),
            "q_if": s.positions(m.q_if),
            "nodes": nodes,
            "w": s.positions(fb.w[bus, ph, t] for bus, ph in nodes for t in m.T).reshape(len(nodes), H),
            "units": units,
            "pmpp": {u.name: u.pmpp_kw for u in self.setup.ders.pv},
        }

    def _read(self, stats: SolveStats, full: bool, fallback: bool, start: float) -> FeederSolve:
        plan = self._plan
        x = self.solver.solution()
        fb = self.model.feeder
        out = FeederSolve(
            status=stats.status, optimal=stats.optimal, objective=stats.objective,
            p_kw=x[plan["p_if"]].copy(), q_kvar=x[plan["q_if"]].copy(),
            terms={name: form.value(x) for name, form in plan["terms"].items()},
            slacks={name: form.value(x) for name, form in plan["slacks"].items()},
            highs_s=stats.highs_s, solve_s=0.0, mip_fallback=fallback,
        )
        if full:
            out.voltages = dict(zip(plan["nodes"], np.sqrt(np.maximum(x[plan["w"]], 0.0))))
            setpoints = {}
            for name, (kind, cols) in plan["units"].items():
                values = {key: x[c].copy() for key, c in cols.items()}
                if kind == "pv":
                    pmpp = plan["pmpp"][name]
                    values["available_kw"] = np.array([pyo.value(p) for p in fb.pv[name].available.values()])
                    values["p_cap_pu"] = np.clip(values["p_kw"] / pmpp, 0.0, 1.0) if pmpp > 0 else 0 * values["p_kw"]
                elif kind == "battery":
                    values["p_kw"] = values["discharge_kw"] - values["charge_kw"]
                elif kind == "flexible":
                    baseline = np.array([pyo.value(p) for p in fb.flexible[name].baseline.values()])
                    values = {"p_kw": baseline + values["up"] - values["down"]}
                setpoints[name] = values
            out.setpoints = setpoints
        out.solve_s = time.perf_counter() - start
        return out

    def unit_power(self) -> dict[str, np.ndarray]:
        """Each unit's injection p_kw (+ into the grid) in the last solution, by "kind/name"."""
        if not hasattr(self, "_unit_forms"):
            s = self.solver
            self._unit_forms = {f"{kind}/{name}": [s.linear(d.p_kw[t]) for t in d.T] for kind, name, d in self.units}
        x = self.solver.solution()
        return {key: np.array([f.value(x) for f in forms]) for key, forms in self._unit_forms.items()}

    def unit_reactive(self) -> dict[str, np.ndarray]:
        """Each unit's reactive injection q_kvar in the last solution, by "kind/name"."""
        if not hasattr(self, "_unit_q_forms"):
            s = self.solver
            self._unit_q_forms = {f"{kind}/{name}": [s.linear(d.q_kvar[t]) for t in d.T] for kind, name, d in self.units}
        x = self.solver.solution()
        return {key: np.array([f.value(x) for f in forms]) for key, forms in self._unit_q_forms.items()}

    def period_costs(self) -> np.ndarray:
        """The feeder cost incurred in each period in the last solution (`period_cost`)."""
        if not hasattr(self, "_period_forms"):
            fb = self.model.feeder
            self._period_forms = [self.solver.linear(period_cost(fb, t, self.options)) for t in self.model.T]
        x = self.solver.solution()
        return np.array([f.value(x) for f in self._period_forms])

    def period_violations(self) -> tuple[np.ndarray, np.ndarray]:
        """Use of the voltage slacks (pu^2, summed over nodes) and of the branch-flow slacks
        (kVA, summed over branch phases) per period in the last solution."""
        if not hasattr(self, "_violation_cols"):
            fb, s, H = self.model.feeder, self.solver, len(self.model.T)
            nodes = list(fb.limited_nodes)
            volt = np.concatenate([s.positions(fb.s_v_hi[n, t] for n in nodes for t in fb.T),
                                   s.positions(fb.s_v_lo[n, t] for n in nodes for t in fb.T)]).reshape(-1, H)
            flows = list(fb.limited_flows) if hasattr(fb, "limited_flows") else []
            flow = s.positions(fb.s_flow[n, t] for n in flows for t in fb.T).reshape(-1, H) if flows else np.zeros((0, H), int)
            self._violation_cols = (volt, flow)
        x = self.solver.solution()
        volt, flow = self._violation_cols
        return x[volt].sum(axis=0), (x[flow].sum(axis=0) if flow.size else np.zeros(len(self.model.T)))

    def horizon_shortfalls(self) -> tuple[float, float]:
        """Battery SOC shortfall and unmet EV energy (kWh) in the last solution."""
        return self.last.slacks["soc_shortfall_kwh"], self.last.slacks["ev_unmet_kwh"]

    def battery_soc(self) -> dict[str, np.ndarray]:
        """Each battery's SOC at the end of every period in the last solution."""
        x = self.solver.solution()
        return {name: x[self.solver.positions(d.soc)] for name, d in self.model.feeder.battery.items()}

    def values(self, name: str) -> np.ndarray:
        """Solution values of one indexed Var of the model or its feeder block, in index order."""
        var = getattr(self.model, name, None) or getattr(self.model.feeder, name)
        return self.solver.solution()[self.solver.positions(var)]


