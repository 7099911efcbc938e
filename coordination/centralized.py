"""The joint T&D look-ahead problem, solved centrally over H periods.

One pyomo model holds the transmission DC-OPF (`m.transmission`), one LinDist3Flow block
per feeder with its DERs (`m.feeders[name]`), the boundary coupling and the objective
terms (`m.cost[name]`). `CentralizedProblem` builds it once; each step of a receding
horizon then only writes new data into mutable Params (`update`: forecasts, measured
SOC, boundary voltages, available PV, previous dispatch) and re-solves with the
persistent HiGHS (`solve`), which returns the DER set-points and per-period results.

A feeder stands for `multiplier` identical copies behind its boundary bus: its power
counts multiplier times at the boundary, and so do its costs and penalties.

With `Options.feeder_model` "reduced" each feeder block holds only its DERs' variables and
its network as an affine map of them (`coordination.reduced_feeder`); `solve` then re-solves
while the solution breaks a voltage or branch row the block left out, adding those rows, so
the optimum is the full formulation's. Nothing in a block scales with its copies, and
feeders built on one model share one factorisation of its map (`feeder_response`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pyomo.environ as pyo

from coordination.ders import FeederDers, add_ders, der_injections, parse_connection
from coordination.ders.registry import BY_NAME, KINDS
from coordination.distribution import (
    constraints_branch_limits,
    constraints_lindist3flow,
    constraints_voltage_limits,
    limited_flows,
    parameters_feeder,
    variables_lindist3flow,
)
from coordination.exchange import Exchange, centralized_exchange, mutable_values
from coordination.interface import (
    constraints_boundary_power,
    constraints_head_voltage,
    parameters_head_voltage,
    parameters_multiplier,
    set_multiplier,
)
from coordination.network_data import FeederData, TransmissionData
from coordination.objective import feeder_network_terms, in_order, objective_terms, transmission_terms
from coordination.options import Options
from coordination.problem import PersistentProblem, der_cost_terms, der_measure, read_units, unit_columns
from coordination.reduced_feeder import build_reduced_feeder
from coordination.solver import BATTERY_BINARIES, SolveStats
from coordination.transmission import add_dcopf, lmps, set_bus_load, set_generator_limits
from coordination.update import Update
from grid.setpoints import Setpoints

FEEDER_MODELS = ("full", "reduced")
FEEDER_ROWS = ("lazy", "screened")

__all__ = ["CentralizedProblem", "FeederSetup", "Options", "Result", "build_centralized", "build_feeder_block",
           "cost_terms"]


@dataclass
class FeederSetup:
    """One feeder of the problem: its network data, where it attaches and its DERs."""

    data: FeederData
    bus: int  # transmission boundary bus
    multiplier: float = 1.0
    ders: FeederDers = field(default_factory=FeederDers.none)
    v_min: float = 0.95
    v_max: float = 1.05
    v_source: float = 1.0  # head voltage until an update sets it


@dataclass
class Result:
    """What one solve gives a coordinator; arrays run over the horizon's periods. A failed
    solve has its status, timings and sizes, and nothing else."""

    status: str
    optimal: bool = False
    objective: float | None = None
    terms: dict[str, float] = field(default_factory=dict)  # m.cost[name] values
    solve_s: float = 0.0  # the solver call (update push + HiGHS + status)
    highs_s: float = 0.0  # inside HiGHS
    update_s: float = 0.0  # writing the new data into Params (last `update`) + pushing them into HiGHS
    read_s: float = 0.0  # reading back the values below
    n_variables: int = 0
    n_constraints: int = 0
    slacks: dict[str, float] = field(default_factory=dict)  # total use of each kind of soft limit
    dispatch_mw: dict[str, np.ndarray] = field(default_factory=dict)  # generator -> MW
    boundary_mw: dict[int, np.ndarray] = field(default_factory=dict)  # boundary bus -> MW
    feeder_p_kw: dict[str, np.ndarray] = field(default_factory=dict)  # feeder -> substation P of one copy
    feeder_q_kvar: dict[str, np.ndarray] = field(default_factory=dict)
    voltages: dict[str, dict[tuple[str, int], np.ndarray]] = field(default_factory=dict)  # feeder -> (bus, phase) -> pu
    # feeder -> unit -> {"p_kw", "q_kvar", ...}: what each kind's `setpoints` gives
    setpoints: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    lmp: dict[int, np.ndarray] | None = None  # bus -> currency/MWh (LPs only)
    mip_fallback: bool = False  # "relax-and-check" re-solved as a MIP / "relax-and-fix" fixed directions
    lp_bound: float | None = None  # objective of the first LP (a lower bound) when that was not final
    direction_rounds: int = 0  # re-solves that fixed battery directions (`solver.BatteryDirections.rounds`)
    exchange: Exchange | None = None  # what crossed the TSO-DSO interface (`coordination.exchange`)

    def voltage_range(self, feeder: str) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest predicted node voltage per period (source bus excluded)."""
        v = np.array([x for (bus, _), x in self.voltages[feeder].items()])
        return v.min(axis=0), v.max(axis=0)


def build_feeder_block(fb: pyo.Block, setup: FeederSetup, periods: list[int], options: Options,
                       convex: bool = False, reduced: bool = False) -> None:
    """LinDist3Flow (or, `reduced`, its affine map: `coordination.reduced_feeder`) + DERs + soft
    limits + head voltage of one feeder on its block."""
    data = setup.data
    parameters_feeder(fb, data, periods)
    parameters_head_voltage(fb, setup.v_source)
    parameters_multiplier(fb, setup.multiplier)
    if not reduced:
        variables_lindist3flow(fb, data)
    add_ders(fb, data, setup.ders, periods, options, convex)
    p_inj, q_inj = der_injections(fb, data)
    ratings = {}
    if options.feeder_flow_limits:
        # DER ratings count towards what a branch may carry (PV exporting, batteries discharging).
        extra: dict[tuple[str, int], float] = {}
        for kind, unit in setup.ders.units():
            bus, phases = parse_connection(unit.at, data)
            kva = kind.rating_kva(unit)
            for ph in phases:
                extra[(bus, ph)] = extra.get((bus, ph), 0.0) + kva / len(phases)
        ratings = limited_flows(data, screen=options.flow_limit_screen, extra_kva=extra)
    if reduced:
        build_reduced_feeder(fb, data, p_inj, q_inj, options.voltage_dependent_loads, options.regulators == "hold",
                             setup.v_min, setup.v_max,
                             options.durations(), ratings, options.polygon_sides, screened=options.feeder_rows == "screened")
        return
    constraints_lindist3flow(fb, data, p_inj, q_inj, options.voltage_dependent_loads, options.regulators == "hold")
    constraints_head_voltage(fb, data)
    constraints_voltage_limits(fb, data, setup.v_min, setup.v_max, options.durations())
    if options.feeder_flow_limits:
        constraints_branch_limits(fb, data, options.polygon_sides, options.durations(),
                                  screen=options.flow_limit_screen, extra_kva=extra)
    else:
        fb.flow_violation = pyo.Expression(expr=0.0)


def check_feeder_model(options: Options) -> None:
    """Refuse feeder formulations and row modes that do not exist."""
    if options.feeder_model not in FEEDER_MODELS:
        raise ValueError(f"feeder_model must be one of {', '.join(FEEDER_MODELS)} (got {options.feeder_model!r})")
    if options.feeder_rows not in FEEDER_ROWS:
        raise ValueError(f"feeder_rows must be one of {', '.join(FEEDER_ROWS)} (got {options.feeder_rows!r})")


def cost_terms(m: pyo.Block, options: Options) -> dict[str, object]:
    """The objective's named terms. Feeder terms count multiplier times; the multiplier's
    value enters as a number (a mutable coefficient on every slack would be re-sent to HiGHS
    at each solve), so a change of multipliers rebuilds the terms."""
    feeders = [(fb, pyo.value(fb.multiplier)) for fb in m.feeders.values()]
    return in_order({**transmission_terms(m.transmission, options.penalties),
                     **feeder_network_terms(feeders, options.penalties),
                     **der_cost_terms(feeders, options)})


def build_centralized(transmission: TransmissionData, feeders: Mapping[str, FeederSetup],
                      options: Options) -> pyo.ConcreteModel:
    """The joint model for `options.horizon` periods (see the module docstring)."""
    periods = list(range(options.horizon))
    dt = options.durations()
    m = pyo.ConcreteModel(name="tandem_centralized")
    m.T = pyo.Set(initialize=periods, ordered=True)
    m.transmission = pyo.Block()
    tb = m.transmission
    add_dcopf(tb, transmission, periods, dt, boundary_buses=[f.bus for f in feeders.values()],
              losses=options.transmission_losses, loss_segments=options.loss_segments,
              loss_flow_max_mw=options.loss_flow_max_mw, cost_segments=options.cost_segments)
    check_feeder_model(options)
    reduced = options.feeder_model == "reduced"
    m.feeders = pyo.Block(list(feeders), rule=lambda fb, name: build_feeder_block(fb, feeders[name], periods, options,
                                                                                   reduced=reduced))
    at_bus: dict[int, list[pyo.Block]] = {}
    for name, setup in feeders.items():
        at_bus.setdefault(setup.bus, []).append(m.feeders[name])
    constraints_boundary_power(m, tb, at_bus)
    objective_terms(m, cost_terms(m, options))
    return m


def feeder_slacks(fbs: list[pyo.Block]) -> dict[str, object]:
    """The feeders' and their units' soft-limit use, summed (one copy each)."""
    return {
        "feeder_overload_kvah": pyo.quicksum(fb.flow_violation for fb in fbs),
        "voltage_violation_pu2h": pyo.quicksum(fb.voltage_violation for fb in fbs),
        "soc_shortfall_kwh": pyo.quicksum(der_measure(fb, BY_NAME["battery"], "soc_shortfall_kwh") for fb in fbs),
        "ev_unmet_kwh": pyo.quicksum(der_measure(fb, BY_NAME["ev"], "unmet_kwh") for fb in fbs),
    }


class CentralizedProblem(PersistentProblem):
    """Build once, `update` with the latest data, `solve`; repeat every step."""

    def __init__(self, transmission: TransmissionData, feeders: Mapping[str, FeederSetup],
                 options: Options | None = None):
        self.transmission_data = transmission
        self.feeders = dict(feeders)
        options = options or Options()
        if options.battery_binaries not in BATTERY_BINARIES:
            raise ValueError(f"battery_binaries must be one of {', '.join(BATTERY_BINARIES)} "
                             f"(got {options.battery_binaries!r})")
        start = time.perf_counter()
        model = build_centralized(transmission, self.feeders, options)
        super().__init__(model, options, batteries=[d for fb in model.feeders.values() for d in fb.battery.values()])
        self.build_s = time.perf_counter() - start
        self._update_s = 0.0
        # Reduced feeders: their network maps, and the offsets of the last refresh.
        self.reduced = {name: fb.reduced for name, fb in model.feeders.items() if fb.component("p_inj") is not None}
        self._offsets: dict[str, dict[str, np.ndarray]] = {}
        self.lazy_rounds = 0  # re-solves the lazy rows took at the last solve

    # -- new data -------------------------------------------------------------------------
    def update(self, data: Update | None = None, /, **keywords) -> float:
        """Write the latest data into the model's Params (an `Update`, or its keywords, see
        `coordination.update`); returns the seconds it took."""
        start = time.perf_counter()
        data = data if data is not None else Update.of(**keywords)
        m = self.model
        tb = m.transmission
        if data.bus_load_mw is not None:
            set_bus_load(tb, data.bus_load_mw)
        set_generator_limits(tb, data.gen_p_max_mw, data.gen_p_min_mw, data.gen_p_prev_mw)
        for name, feeder in data.feeders.items():
            if name in self.reduced and feeder.ratios is not None:
                self._reduced_ratios(name, feeder.ratios)
                feeder = replace(feeder, ratios=None)
            self.apply_feeder(m.feeders[name], self.feeders[name].data, feeder)
        if data.multipliers:
            for name, k in data.multipliers.items():
                self.solver.replace_constraints(set_multiplier(m, m.feeders[name], k))
            for name, expr in cost_terms(m, self.options).items():
                m.cost[name].set_value(expr)
            self.solver.replace_objective()
        self._update_s = time.perf_counter() - start
        return self._update_s

    def _reduced_ratios(self, name: str, ratios: FeederData) -> None:
        """A reduced feeder's new taps: its rows and head power rewritten, and with the head
        power the boundary rows."""
        fb = self.model.feeders[name]
        changed = fb.reduced.set_ratios(ratios)
        if changed:
            changed += set_multiplier(self.model, fb, pyo.value(fb.multiplier))
            # The objective first: lazily added slacks got their costs straight in HiGHS, so
            # pyomo's interface would drop them as unused with their rows, and re-add them costless.
            self.solver.replace_objective()
            self.solver.replace_constraints(changed)
            self._plan = None

    # -- the reduced feeders' rows ----------------------------------------------------------
    def _add_rows(self, rows: Mapping[str, dict[str, list]]) -> bool:
        """Add rows to the reduced feeders (and to HiGHS, with the objective's new slacks)."""
        new_vars, new_cons = [], []
        for name, found in rows.items():
            v, c = self.reduced[name].add(found, self._offsets[name])
            new_vars += v
            new_cons += c
        if not new_cons:
            return False
        self.n_variables += len(new_vars)
        self.n_constraints += len(new_cons)
        s = self.solver
        if s.highs is not None:
            s.interface.add_variables(new_vars)
            s.interface.add_constraints(new_cons)
            s._index()
            # The new slacks' costs straight into HiGHS, read from the network terms alone
            # (re-sending the whole objective costs seconds on large models).
            m = self.model
            names = [n for n in feeder_network_terms([], self.options.penalties) if n in m.cost_terms]
            cost: dict[int, float] = {}
            for name in names:
                form = s.linear(m.cost[name])
                for col, coef in zip(form.cols, form.coefs):
                    cost[int(col)] = cost.get(int(col), 0.0) + float(coef)
            cols = s.positions(new_vars).astype(np.int32)
            s.highs.changeColsCost(len(cols), cols, np.array([cost.get(int(c), 0.0) for c in cols]))
            if self._plan is not None:  # the forms over the slacks, made anew
                self._plan["terms"].update({name: s.linear(m.cost[name]) for name in names})
                self._plan["slacks"].update({k: s.linear(e) for k, e in feeder_slacks(list(m.feeders.values())).items()})
        return True

    def _checked(self) -> bool:
        """Add the rows of reduced feeders the last solution breaks; whether there were any."""
        x = self.solver.solution()
        if not self.reduced or not x.size:
            return False
        cols = self.forms("reduced_units", lambda: {name: self.solver.positions(r.unit_vars)
                                                    for name, r in self.reduced.items()})
        return self._add_rows({name: r.check(self._offsets[name], x[cols[name]]) for name, r in self.reduced.items()})

    def _solve_lazy(self, stats: SolveStats) -> SolveStats:
        """Re-solve while the solution breaks a row left out of a reduced feeder (each round adds them)."""
        while stats.status in ("optimal", "time limit (feasible)") and self._checked():
            self.lazy_rounds += 1
            stats = self.solver.solve(push=False).after(stats)
        return stats

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

        slacks = {"unserved_mwh": tb.unserved_mwh, "spilled_mwh": tb.spilled_mwh,
                  "transmission_overload_mwh": tb.flow_violation, **feeder_slacks(list(m.feeders.values()))}
        plan = {
            "terms": {name: s.linear(m.cost[name]) for name in m.cost_terms},
            "slacks": {name: s.linear(expr) for name, expr in slacks.items()},
            "pg": grid(tb.pg, list(tb.gens)),
            "boundary": grid(tb.boundary_mw, list(tb.boundary_buses)),
            "feeders": {},
        }
        for name, fb in m.feeders.items():
            source = self.feeders[name].data.source_bus
            nodes = [n for n in fb.nodes if n[0] != source]
            plan["feeders"][name] = {
                "nodes": nodes,
                "w": grid(fb.w, nodes) if name not in self.reduced else s.positions(self.reduced[name].unit_vars),
                "p_sub": [s.linear(fb.p_sub[t]) for t in m.T],
                "q_sub": [s.linear(fb.q_sub[t]) for t in m.T],
                "units": unit_columns(fb, s.positions),
            }
        return plan

    def solve(self) -> Result:
        """Solve with the data in the model now; read back only what the Result holds."""
        m = self.model
        self.lazy_rounds = 0
        if self.reduced:
            self._offsets = {name: r.refresh() for name, r in self.reduced.items()}
            if self.options.feeder_rows == "screened":
                self._add_rows({name: r.screen(self._offsets[name]) for name, r in self.reduced.items()})
        self.directions.prepare()
        stats = self._solve_lazy(self.solver.solve())
        # The first LP bounds the MIP below only when it started with no directions fixed.
        lp_bound = stats.objective if not self.directions.carried else None
        stats, fallback = self.directions.enforce(stats)
        # Directions fixed by relax-and-fix may move a reduced feeder across a row left out:
        # then the rows go in and the whole sequence runs again (rows only ever grow).
        while fallback and self.reduced and stats.status in ("optimal", "time limit (feasible)") and self._checked():
            self.lazy_rounds += 1
            stats = self._solve_lazy(self.solver.solve(push=False).after(stats))
            stats, _ = self.directions.enforce(stats)
        lp_bound = lp_bound if fallback else None
        start = time.perf_counter()
        update_s = self._update_s + stats.update_s
        self._update_s = 0.0
        if stats.status not in ("optimal", "time limit (feasible)"):
            return Result(stats.status, solve_s=stats.solve_s, highs_s=stats.highs_s, update_s=update_s,
                          n_variables=self.n_variables, n_constraints=self.n_constraints)
        plan = self.plan_after(stats, self._read_plan)
        x = self.solver.solution()
        tb = m.transmission
        voltages = {}
        setpoints = {}
        for name in m.feeders:
            fp = plan["feeders"][name]
            if name in self.reduced:  # computed from the units' values
                voltages[name] = self.reduced[name].voltages(self._offsets[name], x[fp["w"]])
            else:
                voltages[name] = dict(zip(fp["nodes"], np.sqrt(np.maximum(x[fp["w"]], 0.0))))
            setpoints[name] = read_units(fp["units"], x)
        lmp = None
        if not self.is_mip and not (fallback and self.directions.mode == "relax-and-check") and stats.optimal:
            lmp = lmps(self.solver.duals([tb.power_balance]), tb, self.options.durations())
        result = Result(
            status=stats.status,
            optimal=stats.optimal,
            objective=stats.objective,
            terms={name: form.value(x) for name, form in plan["terms"].items()},
            solve_s=stats.solve_s,
            highs_s=stats.highs_s,
            update_s=update_s,
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
            direction_rounds=self.directions.rounds,
        )
        first = "exchange" not in self._forms
        params = self.forms("exchange", lambda: {name: mutable_values(fb) for name, fb in m.feeders.items()})
        result.exchange = centralized_exchange(self.feeders, params, first, result.setpoints)
        result.read_s = time.perf_counter() - start
        return result

    def fleet_setpoints(self, result: Result, feeder: str, period: int = 0) -> Setpoints:
        """The set-points of one period as the feeder takes them (each kind's part)."""
        return fleet_setpoints(result, self.feeders[feeder].ders, feeder, period)


def fleet_setpoints(result: Result, ders: FeederDers, feeder: str, period: int = 0) -> Setpoints:
    """See `CentralizedProblem.fleet_setpoints` (each kind's `fleet_setpoint`)."""
    units = result.setpoints[feeder]
    return Setpoints(**{kind.fleet_key: {u.name: kind.fleet_setpoint(units[u.name], period, u) for u in ders.of(kind)}
                        for kind in KINDS})
