"""The joint T&D look-ahead problem, solved centrally over H periods.

One pyomo model holds the transmission DC-OPF (`m.transmission`), one LinDist3Flow block
per feeder with its DERs (`m.feeders[name]`), the boundary coupling and the objective
terms (`m.cost[name]`). `CentralizedProblem` builds it once; each step of a receding
horizon then only writes new data into mutable Params (`update`: forecasts, measured
SOC, boundary voltages, available PV, previous dispatch) and re-solves with the
persistent HiGHS (`solve`), which returns the DER set-points and per-period results.

A feeder stands for `multiplier` identical copies behind its boundary bus: its power
counts multiplier times at the boundary, and so do its costs and penalties.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo

from coordination.ders import FeederDers, add_ders, der_injections, parse_connection
from coordination.distribution import (
    constraints_branch_limits,
    constraints_lindist3flow,
    constraints_voltage_limits,
    parameters_feeder,
    set_held_voltage,
    set_load_forecast,
    set_node_loads,
    set_ratios,
    variables_lindist3flow,
)
from coordination.exchange import Exchange, centralized_exchange
from coordination.interface import (
    constraints_boundary_power,
    constraints_head_voltage,
    parameters_head_voltage,
    parameters_multiplier,
    set_head_voltage,
    set_multiplier,
)
from coordination.network_data import FeederData, TransmissionData
from coordination.objective import Penalties, Prices, objective_terms
from coordination.solver import BatteryDirections, PersistentHighs
from coordination.transmission import add_dcopf, lmps, set_bus_load, set_generator_limits


@dataclass
class FeederSetup:
    """One feeder of the problem: its network data, where it attaches and its DERs."""

    data: FeederData
    bus: int  # transmission boundary bus
    multiplier: float = 1.0
    ders: FeederDers = field(default_factory=FeederDers.none)
    v_min: float = 0.95
    v_max: float = 1.05
    v_source: float = 1.0  # head voltage until `update(head_voltage=...)`


@dataclass
class Options:
    horizon: int = 24  # periods
    dt_hours: float = 1.0
    # Batteries' no-simultaneous-charge-and-discharge binaries:
    # "mip"             keeps them binary: every solve a MIP (exact, slow on large models);
    # "relaxed"         solves the LP relaxation only (a battery may charge and discharge at once);
    # "relax-and-check" solves the LP and, only if some battery then charges and discharges
    #                   at once, re-solves with the binaries integer (exact: an LP solution
    #                   without such periods is optimal for the MIP too);
    # "relax-and-fix"   solves the LP and, where a battery charges and discharges at once,
    #                   fixes its direction in that period to the sign of its net power and
    #                   re-solves the LP (warm), until no period is left (at most 10 rounds).
    #                   Never simultaneous, LP speed, not proven optimal: Result.lp_bound is the
    #                   first LP's objective, a lower bound on the MIP's.
    battery_binaries: str = "relax-and-fix"
    voltage_dependent_loads: bool = True
    # Regulators as fixed ratios ("fixed_ratio", updated with `update(ratios=...)`), or
    # holding the voltage on their load side ("hold", set with `update(held_voltage=...)`).
    regulators: str = "fixed_ratio"
    feeder_flow_limits: bool = True
    polygon_sides: int = 8
    flow_limit_screen: float | None = 2.0  # see distribution.constraints_branch_limits; None = limit every branch
    transmission_losses: bool = False
    loss_segments: int = 4
    loss_flow_max_mw: float | None = None
    cost_segments: int = 4
    prices: Prices = field(default_factory=Prices)
    penalties: Penalties = field(default_factory=Penalties)
    time_limit_s: float | None = None
    mip_rel_gap: float | None = 1e-6
    # After the first solve, move the model's objects out of the cyclic garbage collector's
    # reach (gc.freeze): it otherwise walks the millions of pyomo objects now and then,
    # adding 50-100 ms pauses to re-solves. The model then lives as long as the process.
    freeze_gc: bool = True


@dataclass
class Result:
    """What one solve gives a coordinator; arrays run over the horizon's periods."""

    status: str
    optimal: bool
    objective: float | None
    terms: dict[str, float]  # m.cost[name] values
    solve_s: float  # the solver call (update push + HiGHS + status)
    highs_s: float  # inside HiGHS
    update_s: float  # writing the new data into Params (last `update`) + pushing them into HiGHS
    read_s: float  # reading back the values below
    n_variables: int
    n_constraints: int
    slacks: dict[str, float]  # total use of each kind of soft limit
    dispatch_mw: dict[str, np.ndarray]  # generator -> MW
    boundary_mw: dict[int, np.ndarray]  # boundary bus -> MW
    feeder_p_kw: dict[str, np.ndarray]  # feeder -> substation P of one copy
    feeder_q_kvar: dict[str, np.ndarray]
    voltages: dict[str, dict[tuple[str, int], np.ndarray]]  # feeder -> (bus, phase) -> pu
    setpoints: dict[str, dict[str, dict[str, np.ndarray]]]  # feeder -> unit -> {"p_kw", "q_kvar", ...}
    lmp: dict[int, np.ndarray] | None = None  # bus -> currency/MWh (LPs only)
    mip_fallback: bool = False  # "relax-and-check" re-solved as a MIP / "relax-and-fix" fixed directions
    lp_bound: float | None = None  # objective of the first LP (a lower bound) when that was not final
    exchange: Exchange | None = None  # what crossed the TSO-DSO interface (`coordination.exchange`)

    def voltage_range(self, feeder: str) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest predicted node voltage per period (source bus excluded)."""
        v = np.array([x for (bus, _), x in self.voltages[feeder].items()])
        return v.min(axis=0), v.max(axis=0)


def build_feeder_block(fb: pyo.Block, setup: FeederSetup, periods: list[int], options: Options) -> None:
    """LinDist3Flow + DERs + soft limits + head voltage of one feeder on its block."""
    data = setup.data
    parameters_feeder(fb, data, periods)
    parameters_head_voltage(fb, setup.v_source)
    parameters_multiplier(fb, setup.multiplier)
    variables_lindist3flow(fb, data)
    add_ders(fb, data, setup.ders, periods, options.dt_hours, options.battery_binaries != "mip", options.polygon_sides)
    p_inj, q_inj = der_injections(fb, data)
    constraints_lindist3flow(fb, data, p_inj, q_inj, options.voltage_dependent_loads, options.regulators == "hold")
    constraints_head_voltage(fb, data)
    constraints_voltage_limits(fb, data, setup.v_min, setup.v_max, options.dt_hours)
    if options.feeder_flow_limits:
        # DER ratings count towards what a branch may carry (PV exporting, batteries discharging).
        extra: dict[tuple[str, int], float] = {}
        for unit in [*setup.ders.pv, *setup.ders.batteries, *setup.ders.flexible, *setup.ders.evs]:
            bus, phases = parse_connection(unit.at, data)
            kva = getattr(unit, "kva", None) or getattr(unit, "kw_rated", None) or getattr(unit, "max_kw", None) \
                or getattr(unit, "up_kw", 0.0)
            for ph in phases:
                extra[(bus, ph)] = extra.get((bus, ph), 0.0) + kva / len(phases)
        constraints_branch_limits(fb, data, options.polygon_sides, options.dt_hours,
                                  screen=options.flow_limit_screen, extra_kva=extra)
    else:
        fb.flow_violation = pyo.Expression(expr=0.0)


def _der_sum(m: pyo.Block, kind: str, measure: str) -> object:
    """Sum over feeders of multiplier x the measure of every unit of a kind."""
    return pyo.quicksum(pyo.value(fb.multiplier) * getattr(getattr(fb, kind)[name], measure)
                        for fb in m.feeders.values() for name in getattr(fb, kind))


def cost_terms(m: pyo.Block, options: Options) -> dict[str, object]:
    """The objective's named terms. Feeder terms count multiplier times; the multiplier's
    value enters as a number (a mutable coefficient on every slack would be re-sent to HiGHS
    at each solve), so `CentralizedProblem.update(multipliers=...)` rebuilds the terms."""
    tb = m.transmission
    prices, pen = options.prices, options.penalties

    def feeder_sum(attr: str) -> object:
        return pyo.quicksum(pyo.value(fb.multiplier) * getattr(fb, attr) for fb in m.feeders.values())

    return {
        "generation": tb.cost_generation,
        "curtailment": prices.curtailment / 1000.0 * _der_sum(m, "pv", "curtailed_kwh"),
        "battery_degradation": prices.battery_degradation / 1000.0 * _der_sum(m, "battery", "throughput_kwh"),
        "load_shift": prices.load_shift / 1000.0 * _der_sum(m, "flexible", "shifted_kwh"),
        "reactive": prices.reactive / 1000.0 * (_der_sum(m, "pv", "reactive_kvarh") + _der_sum(m, "battery", "reactive_kvarh")),
        "penalty_unserved": pen.unserved * tb.unserved_mwh,
        "penalty_spilled": pen.spilled * tb.spilled_mwh,
        "penalty_transmission_overload": pen.transmission_overload * tb.flow_violation,
        "penalty_feeder_overload": pen.feeder_overload / 1000.0 * feeder_sum("flow_violation"),
        "penalty_voltage": pen.voltage * feeder_sum("voltage_violation"),
        "penalty_soc_target": pen.soc_target / 1000.0 * _der_sum(m, "battery", "soc_shortfall_kwh"),
        "penalty_ev_unmet": pen.ev_unmet / 1000.0 * _der_sum(m, "ev", "unmet_kwh"),
    }


def build_centralized(transmission: TransmissionData, feeders: Mapping[str, FeederSetup],
                      options: Options) -> pyo.ConcreteModel:
    """The joint model for `options.horizon` periods (see the module docstring)."""
    periods = list(range(options.horizon))
    dt = options.dt_hours
    m = pyo.ConcreteModel(name="tandem_centralized")
    m.T = pyo.Set(initialize=periods, ordered=True)
    m.transmission = pyo.Block()
    tb = m.transmission
    add_dcopf(tb, transmission, periods, dt, boundary_buses=[f.bus for f in feeders.values()],
              losses=options.transmission_losses, loss_segments=options.loss_segments,
              loss_flow_max_mw=options.loss_flow_max_mw, cost_segments=options.cost_segments)
    m.feeders = pyo.Block(list(feeders), rule=lambda fb, name: build_feeder_block(fb, feeders[name], periods, options))
    at_bus: dict[int, list[pyo.Block]] = {}
    for name, setup in feeders.items():
        at_bus.setdefault(setup.bus, []).append(m.feeders[name])
    constraints_boundary_power(m, tb, at_bus)
    objective_terms(m, cost_terms(m, options))
    return m


class CentralizedProblem:
    """Build once, `update` with the latest data, `solve`; repeat every step."""

    def __init__(self, transmission: TransmissionData, feeders: Mapping[str, FeederSetup],
                 options: Options | None = None):
        self.transmission_data = transmission
        self.feeders = dict(feeders)
        self.options = options or Options()
        if self.options.battery_binaries not in ("mip", "relaxed", "relax-and-check", "relax-and-fix"):
            raise ValueError("battery_binaries must be 'mip', 'relaxed', 'relax-and-check' or 'relax-and-fix' "
                             f"(got {self.options.battery_binaries!r})")
        start = time.perf_counter()
        self.model = build_centralized(transmission, self.feeders, self.options)
        m = self.model
        self.solver = PersistentHighs(m, self.options.time_limit_s, self.options.mip_rel_gap)
        self.n_variables = sum(1 for _ in m.component_data_objects(pyo.Var, active=True))
        self.n_constraints = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
        self.is_mip = any(not v.is_continuous() for v in m.component_data_objects(pyo.Var, active=True))
        self._plan: dict | None = None  # what to read back, made after the first solve
        self.directions = BatteryDirections(
            self.solver, [d for fb in m.feeders.values() for d in fb.battery.values()], self.options.battery_binaries)
        self.build_s = time.perf_counter() - start
        self._update_s = 0.0

    # -- new data -------------------------------------------------------------------------
    def update(self, *, bus_load_mw: Mapping[int, object] | np.ndarray | None = None,
               gen_p_max_mw: Mapping[str, object] | None = None,
               gen_p_min_mw: Mapping[str, object] | None = None,
               gen_p_prev_mw: Mapping[str, float] | None = None,
               load_levels: Mapping[str, np.ndarray] | None = None,
               node_loads: Mapping[str, tuple[list, np.ndarray, np.ndarray]] | None = None,
               pv_available_kw: Mapping[str, Mapping[str, object]] | None = None,
               battery_soc: Mapping[str, Mapping[str, float]] | None = None,
               battery_soc_target: Mapping[str, Mapping[str, float]] | None = None,
               ev_plugged: Mapping[str, Mapping[str, object]] | None = None,
               ev_energy_kwh: Mapping[str, Mapping[str, float]] | None = None,
               flexible_baseline_kw: Mapping[str, Mapping[str, object]] | None = None,
               head_voltage: Mapping[str, object] | None = None,
               multipliers: Mapping[str, float] | None = None,
               ratios: Mapping[str, FeederData] | None = None,
               held_voltage: Mapping[str, Mapping[tuple[str, int], float]] | None = None) -> float:
        """Write the latest data into the model's Params; returns the seconds it took.

        Per-period values are arrays over the horizon (or one number for all periods).
        Feeder data are keyed by feeder name, then unit name: `load_levels[feeder]` is
        [load, period] in the order of `FeederData.loads` (as `FeederModel.load_levels`),
        `node_loads[feeder]` = (nodes, P kW [node, period], Q kvar [node, period]),
        `battery_soc` the measured SOC (0..1, clipped into the unit's limits),
        `ratios[feeder]` a FeederData with the present regulator taps, `held_voltage[feeder]`
        the voltage (pu) each regulator holds, by (bus, phase) (regulators="hold")."""
        start = time.perf_counter()
        m = self.model
        tb = m.transmission
        H = len(m.T)
        if bus_load_mw is not None:
            set_bus_load(tb, bus_load_mw)
        set_generator_limits(tb, gen_p_max_mw, gen_p_min_mw, gen_p_prev_mw)
        for name, levels in (load_levels or {}).items():
            set_load_forecast(m.feeders[name], self.feeders[name].data, levels)
        for name, (nodes, p, q) in (node_loads or {}).items():
            set_node_loads(m.feeders[name], nodes, p, q)
        for name, data in (ratios or {}).items():
            self.solver.update_coefficients(set_ratios(m.feeders[name], data))
        for name, v in (held_voltage or {}).items():
            set_held_voltage(m.feeders[name], v)
        for name, v in (head_voltage or {}).items():
            set_head_voltage(m.feeders[name], v)
        if multipliers:
            for name, k in multipliers.items():
                self.solver.replace_constraints(set_multiplier(m, m.feeders[name], k))
            for name, expr in cost_terms(m, self.options).items():
                m.cost[name].set_value(expr)
            self.solver.replace_objective()
        for feeder, units in (pv_available_kw or {}).items():
            for unit, values in units.items():
                _set_series(m.feeders[feeder].pv[unit].available, values, H)
        for feeder, units in (battery_soc or {}).items():
            specs = {b.name: b for b in self.feeders[feeder].ders.batteries}
            for unit, soc in units.items():
                spec = specs[unit]
                m.feeders[feeder].battery[unit].soc0 = float(min(max(soc, spec.soc_min), spec.soc_max))
        for feeder, units in (battery_soc_target or {}).items():
            for unit, soc in units.items():
                m.feeders[feeder].battery[unit].soc_target = float(soc)
        for feeder, units in (ev_plugged or {}).items():
            for unit, values in units.items():
                _set_series(m.feeders[feeder].ev[unit].plugged, values, H)
        for feeder, units in (ev_energy_kwh or {}).items():
            for unit, kwh in units.items():
                m.feeders[feeder].ev[unit].energy_required = float(kwh)
        for feeder, units in (flexible_baseline_kw or {}).items():
            for unit, values in units.items():
                _set_series(m.feeders[feeder].flexible[unit].baseline, values, H)
        self._update_s = time.perf_counter() - start
        return self._update_s

    # -- solve ----------------------------------------------------------------------------
    def _read_plan(self) -> dict:
        """Columns and linear forms of everything a Result holds, computed once: reading a
        result is then a few numpy gathers and dot products on HiGHS' solution vector
        (flows, angles and most slacks are never read one by one)."""
        m, s = self.model, self.solver
        tb = m.transmission
        H = len(m.T)

        def grid(var, keys):  # columns [key, period]
            return s.positions(var[(*k, t) if isinstance(k, tuple) else (k, t)] for k in keys for t in m.T).reshape(len(keys), H)

        def feeder_total(attr):
            return s.linear(pyo.quicksum(getattr(fb, attr) for fb in m.feeders.values()))

        def der_total(kind, measure):
            return s.linear(pyo.quicksum(getattr(d, measure) for fb in m.feeders.values() for d in getattr(fb, kind).values()))

        plan = {
            "terms": {name: s.linear(m.cost[name]) for name in m.cost_terms},
            "slacks": {
                "unserved_mwh": s.linear(tb.unserved_mwh),
                "spilled_mwh": s.linear(tb.spilled_mwh),
                "transmission_overload_mwh": s.linear(tb.flow_violation),
                "feeder_overload_kvah": feeder_total("flow_violation"),
                "voltage_violation_pu2h": feeder_total("voltage_violation"),
                "soc_shortfall_kwh": der_total("battery", "soc_shortfall_kwh"),
                "ev_unmet_kwh": der_total("ev", "unmet_kwh"),
            },
            "pg": grid(tb.pg, list(tb.gens)),
            "boundary": grid(tb.boundary_mw, list(tb.boundary_buses)),
            "feeders": {},
        }
        for name, fb in m.feeders.items():
            source = self.feeders[name].data.source_bus
            nodes = [n for n in fb.nodes if n[0] != source]
            units = {}
            for unit, d in fb.pv.items():
                units[unit] = ("pv", {"p_kw": s.positions(d.p), "q_kvar": s.positions(d.q)})
            for unit, d in fb.battery.items():
                units[unit] = ("battery", {"charge_kw": s.positions(d.p_ch), "discharge_kw": s.positions(d.p_dis),
                                           "q_kvar": s.positions(d.q), "soc": s.positions(d.soc)})
            for unit, d in fb.flexible.items():
                units[unit] = ("flexible", {"up": s.positions(d.up), "down": s.positions(d.down)})
            for unit, d in fb.ev.items():
                units[unit] = ("ev", {"p_kw": s.positions(d.p)})
            plan["feeders"][name] = {
                "nodes": nodes,
                "w": grid(fb.w, nodes),
                "p_sub": [s.linear(fb.p_sub[t]) for t in m.T],
                "q_sub": [s.linear(fb.q_sub[t]) for t in m.T],
                "units": units,
            }
        return plan

    def solve(self) -> Result:
        """Solve with the data in the model now; read back only what the Result holds."""
        m = self.model
        stats = self.solver.solve()
        lp_bound = stats.objective
        stats, fallback = self.directions.enforce(stats)
        lp_bound = lp_bound if fallback else None
        start = time.perf_counter()
        update_s = self._update_s + stats.update_s
        self._update_s = 0.0
        if stats.status not in ("optimal", "time limit (feasible)"):
            return Result(stats.status, False, None, {}, stats.solve_s, stats.highs_s, update_s,
                          0.0, self.n_variables, self.n_constraints, {}, {}, {}, {}, {}, {}, {})
        if self._plan is None or stats.first:
            self._plan = self._read_plan()
            if self.options.freeze_gc:
                gc.collect()
                gc.freeze()
        plan = self._plan
        x = self.solver.solution()
        tb = m.transmission
        setpoints: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        voltages: dict[str, dict[tuple[str, int], np.ndarray]] = {}
        for name, fb in m.feeders.items():
            fp = plan["feeders"][name]
            w = x[fp["w"]]
            voltages[name] = dict(zip(fp["nodes"], np.sqrt(np.maximum(w, 0.0))))
            units: dict[str, dict[str, np.ndarray]] = {}
            for unit, (kind, cols) in fp["units"].items():
                values = {key: x[c] for key, c in cols.items()}
                if kind == "pv":
                    d = fb.pv[unit]
                    pmpp = next(u.pmpp_kw for u in self.feeders[name].ders.pv if u.name == unit)
                    values["available_kw"] = np.array([pyo.value(d.available[t]) for t in d.T])
                    values["p_cap_pu"] = np.clip(values["p_kw"] / pmpp, 0.0, 1.0) if pmpp > 0 else 0 * values["p_kw"]
                elif kind == "battery":
                    values["p_kw"] = values["discharge_kw"] - values["charge_kw"]
                elif kind == "flexible":
                    d = fb.flexible[unit]
                    baseline = np.array([pyo.value(d.baseline[t]) for t in d.T])
                    values = {"p_kw": baseline + values["up"] - values["down"]}
                units[unit] = values
            setpoints[name] = units
        lmp = None
        if not self.is_mip and not (fallback and self.directions.mode == "relax-and-check") and stats.optimal:
            lmp = lmps(self.solver.duals([tb.power_balance]), tb, self.options.dt_hours)
        result = Result(
            status=stats.status,
            optimal=stats.optimal,
            objective=stats.objective,
            terms={name: form.value(x) for name, form in plan["terms"].items()},
            solve_s=stats.solve_s,
            highs_s=stats.highs_s,
            update_s=update_s,
            read_s=0.0,
            n_variables=self.n_variables,
            n_constraints=self.n_constraints,
            slacks={name: form.value(x) for name, form in plan["slacks"].items()},
            dispatch_mw=dict(zip(tb.gens, x[plan["pg"]])),
            boundary_mw=dict(zip(tb.boundary_buses, x[plan["boundary"]])),
            feeder_p_kw={name: np.array([f.value(x) for f in plan["feeders"][name]["p_sub"]]) for name in m.feeders},
            feeder_q_kvar={name: np.array([f.value(x) for f in plan["feeders"][name]["q_sub"]]) for name in m.feeders},
            voltages=voltages,
            setpoints=setpoints,
            lmp=lmp,
            mip_fallback=fallback,
            lp_bound=lp_bound,
        )
        result.exchange = centralized_exchange(self, result)
        result.read_s = time.perf_counter() - start
        return result

    def fleet_setpoints(self, result: Result, feeder: str, period: int = 0) -> dict[str, dict]:
        """The set-points of one period in the form `DerFleet.set_setpoints` takes:
        pv {name: (cap as a share of Pmpp, kvar)}, batteries {name: kW (+ discharge)}, evs {name: kW}."""
        units = result.setpoints[feeder]
        ders = self.feeders[feeder].ders
        return {
            "pv": {u.name: (float(units[u.name]["p_cap_pu"][period]), float(units[u.name]["q_kvar"][period])) for u in ders.pv},
            "batteries": {u.name: float(units[u.name]["p_kw"][period]) for u in ders.batteries},
            "evs": {u.name: float(units[u.name]["p_kw"][period]) for u in ders.evs},
        }


def _set_series(param, values, horizon: int) -> None:
    """A per-period Param from an array over the horizon (or one number for every period)."""
    row = np.broadcast_to(np.asarray(values, dtype=float), (horizon,))
    for t, v in zip(param.index_set(), row):
        param[t] = float(v)
