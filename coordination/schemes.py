"""TSO-DSO coordination schemes, each with the interface of `CentralizedProblem`.

Every scheme is built from `(transmission, feeders, options)`, takes the same `update(...)`
data, and `solve()` returns a `Result` (a `SchemeResult`) with the DER set-points of every
feeder, so a coordinator picks a class by name from `SCHEMES`:

* "tso_managed"  `CentralizedProblem`: one problem with both networks (the benchmark optimum);
* "hybrid"       DSOs validate DER ranges against their networks; the TSO dispatches the DERs
                 within them with its own network only; DSOs apply the dispatch and set Q;
* "dso_managed"  DSOs report P-Q regions with costs per period; the TSO dispatches the
                 interfaces as aggregated resources; DSOs meet the targets at least cost;
* "dso_first"    DSOs plan alone, the TSO prices that plan (LMPs), DSOs re-plan at those prices;
                 the TSO takes the resulting exchanges as given;
* "admm"         TSO and DSOs each solve their own problem with copies of the interface power,
                 exchanging values and prices until the residuals fall below tolerance.

Every scheme but tso_managed ends alike: each DSO's dispatch is what happens on its feeder,
and the TSO re-dispatches its generation for the interface powers that result (the
settlement, a DC-OPF with fixed interfaces), which gives the dispatch, the LMPs and the
transmission cost terms. The objective is the sum of the same named terms as the
centralized objective (transmission terms + multiplier x each feeder's terms), evaluated
at what the scheme decided, so it is the centralized objective of a feasible point of the
centralized problem: the centralized optimum is a lower bound of every scheme's objective.
The formulations and what crosses the interface are in docs/coordination.md.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from coordination.agents import make_pool
from coordination.centralized import CentralizedProblem, FeederSetup, Options, Result, fleet_setpoints
from coordination.dso import FEEDER_SLACKS, FeederSolve
from coordination.exchange import TSO, Exchange, dso, needs
from coordination.network_data import TransmissionData
from coordination.objective import TRANSMISSION_TERMS
from coordination.problem import present_terms
from coordination.solver import BATTERY_BINARIES
from coordination.tso import Interface, TransmissionProblem
from coordination.update import Update
from coordination.validation import PRIORITIES
from grid.setpoints import Setpoints


@dataclass
class SchemeOptions(Options):
    """`Options` plus the settings of the distributed schemes."""

    hybrid_priority: str = "dso"  # shared DER: "dso" reserves the DSO's own dispatch first, "tso" does not
    region_directions: int = 16  # directions per P-Q region (dso_managed)
    dso_processes: int | None = None  # worker processes for the DSO problems; None: admm one per feeder up
    #                                   to the CPUs, the other schemes none (0 = in this process)
    admm_rho: float = 1.0  # penalty of the augmented Lagrangian, currency per MW^2 per period
    admm_eps_abs: float = 1e-3  # MW per interface value
    admm_eps_rel: float = 1e-3
    admm_max_iterations: int = 300
    admm_adaptive_rho: bool = True  # residual balancing: rho x2 or /2 when one residual is 10x the other
    admm_warm_start: bool = True  # start from the last solve's interface values, prices and rho


def scheme_options(options: Options | None) -> SchemeOptions:
    """SchemeOptions from Options (defaults for the scheme settings), checked."""
    if options is None:
        options = SchemeOptions()
    elif not isinstance(options, SchemeOptions):
        options = SchemeOptions(**{f.name: getattr(options, f.name) for f in dataclasses.fields(Options)})
    if options.battery_binaries not in BATTERY_BINARIES:
        raise ValueError(f"battery_binaries must be one of {', '.join(BATTERY_BINARIES)} "
                         f"(got {options.battery_binaries!r})")
    if not options.uniform:  # their DSO and TSO problems, bands and prices assume one period length
        raise ValueError("period_hours: multi-resolution horizons are for the centralized scheme only")
    if options.hybrid_priority not in PRIORITIES:
        raise ValueError(f"hybrid_priority must be 'dso' or 'tso' (got {options.hybrid_priority!r})")
    if options.region_directions < 4:
        raise ValueError(f"region_directions must be at least 4 (got {options.region_directions})")
    if options.dso_processes is not None and options.dso_processes < 0:
        raise ValueError(f"dso_processes must be 0 or more (got {options.dso_processes})")
    if options.admm_rho <= 0 or options.admm_eps_abs <= 0 or options.admm_eps_rel < 0 or options.admm_max_iterations < 1:
        raise ValueError("admm_rho and admm_eps_abs must be positive, admm_eps_rel non-negative, "
                         "admm_max_iterations at least 1")
    return options


@dataclass
class SchemeResult(Result):
    """A scheme's Result, plus what the TSO planned for each interface (kW, one copy)."""

    interface_plan_kw: dict[str, np.ndarray] = field(default_factory=dict)


class _Scheme:
    """What every distributed scheme shares: data routing, the DSO pool, the settlement."""

    name = ""
    tso_kind = "fixed"

    def __init__(self, transmission: TransmissionData, feeders: Mapping[str, FeederSetup],
                 options: Options | None = None):
        start = time.perf_counter()
        self.transmission_data = transmission
        self.feeders = dict(feeders)
        self.options = scheme_options(options)
        opts = self.options
        self.multipliers = {name: float(s.multiplier) for name, s in self.feeders.items()}
        self.term_names = present_terms(s.ders for s in self.feeders.values())  # the centralized objective's
        self.tso = None
        if self.tso_kind != "fixed":
            self.tso = TransmissionProblem(transmission, self._interfaces(), opts, self.tso_kind,
                                           region_points=opts.region_directions + 1)
        self.settlement = TransmissionProblem(transmission, self._interfaces(), opts, "fixed")
        processes = opts.dso_processes
        if processes is None:
            processes = min(len(self.feeders), os.cpu_count() or 1) if self.name == "admm" else 0
        self.pool = make_pool(self.feeders, opts, self.name, processes, region_directions=opts.region_directions,
                              priority=opts.hybrid_priority)
        sizes = self.pool.call("size", {name: {} for name in self.feeders})
        tso_models = [p for p in (self.tso, self.settlement) if p is not None]
        self.n_variables = sum(v for v, _ in sizes.values()) + sum(p.n_variables for p in tso_models)
        self.n_constraints = sum(c for _, c in sizes.values()) + sum(p.n_constraints for p in tso_models)
        self._update_s = 0.0
        self.build_s = time.perf_counter() - start

    def _interfaces(self) -> dict[str, Interface]:
        return {name: Interface(s.bus, s.multiplier, s.ders if self.tso_kind == "ders" else None)
                for name, s in self.feeders.items()}

    # -- new data -------------------------------------------------------------------------
    def update(self, data: Update | None = None, /, **keywords) -> float:
        """As `CentralizedProblem.update`: transmission data go to the TSO's problems, each
        feeder's data to its DSO."""
        start = time.perf_counter()
        data = data if data is not None else Update.of(**keywords)
        for problem in (self.tso, self.settlement):
            if problem is not None:
                problem.update(data)
                if data.multipliers:
                    problem.set_multipliers(data.multipliers)
        if data.multipliers:
            self.multipliers.update({name: float(k) for name, k in data.multipliers.items()})
        unknown = set(data.feeders) - set(self.feeders)
        if unknown:
            raise KeyError(f"unknown feeder {sorted(unknown)[0]!r} in the data")
        if data.feeders:
            self.pool.update(data.feeders)
        self._update_s = time.perf_counter() - start
        return self._update_s

    # -- solving --------------------------------------------------------------------------
    def solve(self) -> SchemeResult:
        """Coordinate, let every DSO dispatch, settle the interfaces; see the module docstring."""
        start = time.perf_counter()
        exchange = Exchange(self.name)
        exchange.tso_needs, exchange.dso_needs = needs(self.name)
        self._tso_highs = 0.0
        dispatch, plan = self._coordinate(exchange)
        return self._settle(dispatch, plan, exchange, start)

    def _coordinate(self, exchange: Exchange) -> tuple[dict[str, FeederSolve], dict[str, np.ndarray]]:
        raise NotImplementedError

    def _tso_solve(self, problem: TransmissionProblem):
        out = problem.solve()
        self._tso_highs += out.highs_s
        if not out.optimal and out.status != "time limit (feasible)":
            raise RuntimeError(f"{self.name}: TSO problem {out.status}")
        return out

    def _settle(self, dispatch: dict[str, FeederSolve], plan: dict[str, np.ndarray], exchange: Exchange,
                start: float) -> SchemeResult:
        for name, out in dispatch.items():
            exchange.send(dso(name), TSO, "realised interface P", out.p_kw)
        self.settlement.set_fixed({name: out.p_kw for name, out in dispatch.items()})
        settled = self._tso_solve(self.settlement)
        read = time.perf_counter()
        terms = {name: 0.0 for name in self.term_names}
        for name in TRANSMISSION_TERMS:
            terms[name] += settled.terms[name]
        slacks = dict(settled.slacks)
        slacks.update({name: 0.0 for name in FEEDER_SLACKS})
        for feeder, out in dispatch.items():
            k = self.multipliers[feeder]
            for name, value in out.terms.items():
                terms[name] += k * value
            for name in FEEDER_SLACKS:
                slacks[name] += out.slacks[name]
        optimal = settled.optimal and all(out.optimal for out in dispatch.values())
        status = "optimal" if optimal else "time limit (feasible)"
        if exchange.converged is False:  # ADMM stopped at its iteration cap: a feasible dispatch, not the optimum
            optimal, status = False, "iteration limit (feasible)"
        highs_s = self._tso_highs + self.pool.highs_seconds()
        result = SchemeResult(
            status=status,
            optimal=optimal,
            objective=float(sum(terms.values())),
            terms=terms,
            highs_s=highs_s,
            update_s=self._update_s,
            n_variables=self.n_variables,
            n_constraints=self.n_constraints,
            slacks=slacks,
            dispatch_mw=settled.dispatch_mw,
            boundary_mw=settled.boundary_mw,
            feeder_p_kw={name: out.p_kw for name, out in dispatch.items()},
            feeder_q_kvar={name: out.q_kvar for name, out in dispatch.items()},
            voltages={name: out.voltages for name, out in dispatch.items()},
            setpoints={name: out.setpoints for name, out in dispatch.items()},
            lmp=settled.lmp,
            mip_fallback=any(out.mip_fallback for out in dispatch.values()),
            exchange=exchange,
            interface_plan_kw=plan,
        )
        self._update_s = 0.0
        result.read_s = time.perf_counter() - read
        result.solve_s = time.perf_counter() - start
        return result

    def fleet_setpoints(self, result: Result, feeder: str, period: int = 0) -> Setpoints:
        """As `CentralizedProblem.fleet_setpoints`."""
        return fleet_setpoints(result, self.feeders[feeder].ders, feeder, period)

    def close(self) -> None:
        """Stop the DSO worker processes (if any)."""
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HybridProblem(_Scheme):
    """hybrid: DSO-validated DER ranges, TSO dispatch of the DERs without a distribution model."""

    name = "hybrid"
    tso_kind = "ders"

    def _coordinate(self, exchange):
        names = list(self.feeders)
        offers = self.pool.call("validate", {name: {} for name in names})
        for name, offer in offers.items():
            exchange.send(dso(name), TSO, "validated DER ranges, DSO reactive powers, head-power base and "
                          "sensitivities, DER state", (offer.lo, offer.hi, offer.q, offer.base_kw, offer.sens, offer.state))
            self.tso.set_ders(name, offer.lo, offer.hi, offer.q, offer.base_kw, offer.sens, offer.state)
        planned = self._tso_solve(self.tso)
        for name in names:
            exchange.send(TSO, dso(name), "DER active-power dispatch", planned.unit_p_kw[name])
        dispatch = self.pool.call("follow_ders", {name: {"unit_p_kw": planned.unit_p_kw[name]} for name in names})
        return dispatch, planned.p_kw


class DsoManagedProblem(_Scheme):
    """dso_managed: P-Q regions with costs up, interface targets down, DSO dispatch to meet them."""

    name = "dso_managed"
    tso_kind = "region"

    def _coordinate(self, exchange):
        names = list(self.feeders)
        regions = self.pool.call("region", {name: {} for name in names})
        self.last_regions = regions
        for name, region in regions.items():
            exchange.send(dso(name), TSO, "P-Q region points and costs per period", region)
            self.tso.set_region(name, region["points"], region["costs"])
        planned = self._tso_solve(self.tso)
        for name in names:
            exchange.send(TSO, dso(name), "interface P and Q targets", (planned.p_kw[name], planned.q_kvar[name]))
        dispatch = self.pool.call("follow", {name: {"p_kw": planned.p_kw[name], "q_kvar": planned.q_kvar[name]}
                                             for name in names})
        self.last_targets = {name: (planned.p_kw[name], planned.q_kvar[name]) for name in names}
        return dispatch, planned.p_kw


class DsoFirstProblem(_Scheme):
    """dso_managed, DSO-first variant: DSOs plan, the TSO prices the plan, DSOs re-plan at the
    price; the TSO coordinates the resulting exchanges."""

    name = "dso_first"
    tso_kind = "fixed"

    def _coordinate(self, exchange):
        names = list(self.feeders)
        first = self.pool.call("own", {name: {} for name in names})
        for name, out in first.items():
            exchange.send(dso(name), TSO, "planned interface P", out.p_kw)
        self.settlement.set_fixed({name: out.p_kw for name, out in first.items()})
        priced = self._tso_solve(self.settlement)
        if priced.lmp is None:
            raise RuntimeError("dso_first: the TSO problem gave no prices")
        prices = {name: priced.lmp[self.feeders[name].bus] for name in names}
        for name in names:
            exchange.send(TSO, dso(name), "price at the boundary bus", prices[name])
        dispatch = self.pool.call("respond", {name: {"price": prices[name]} for name in names})
        return dispatch, {name: out.p_kw for name, out in dispatch.items()}


class AdmmProblem(_Scheme):
    """admm: consensus ADMM on the interface powers (see docs/coordination.md).

    In MW of boundary load, x[f, t] = multiplier p_TSO / 1000 is the TSO's copy and
    y[f, t] = multiplier p_DSO / 1000 the DSO's; with u the scaled dual (price / rho):

        x <- argmin c_TSO(x) + rho/2 |x - y + u|^2          (the TSO's problem)
        y <- argmin sum_f c_f(y_f) + rho/2 |x - y + u|^2    (one problem per DSO, in parallel)
        u <- u + x - y

    (the squares as the LP envelopes of `coordination.proximal`: HiGHS' QP solver stalls on them).

    primal residual r = |x - y|, dual residual s = rho |y - y_previous|; stop when
    r <= sqrt(n) eps_abs + eps_rel max(|x|, |y|) and s <= sqrt(n) eps_abs + eps_rel rho |u|.
    With residual balancing rho doubles when r > 10 s and halves when s > 10 r (u rescaled).
    """

    name = "admm"
    tso_kind = "proximal"

    def __init__(self, transmission, feeders, options=None):
        super().__init__(transmission, feeders, options)
        self._state: tuple[dict, dict, float] | None = None  # y, u, rho of the last solve

    def _coordinate(self, exchange):
        opts = self.options
        names = list(self.feeders)
        mult = self.multipliers
        H = opts.horizon
        if self._state is not None and opts.admm_warm_start:
            y, u, rho = ({n: v.copy() for n, v in self._state[0].items()}, {n: v.copy() for n, v in self._state[1].items()},
                         self._state[2])
        else:
            # Cold start: the DSOs' own plans, priced by the TSO for the first dual.
            own = self.pool.call("admm", {n: {"center_kw": np.zeros(H), "kappa": 0.0} for n in names})
            y = {n: mult[n] * own[n].p_kw / 1000.0 for n in names}
            for n in names:
                exchange.send(dso(n), TSO, "planned interface P", own[n].p_kw)
            rho = opts.admm_rho
            self.settlement.set_fixed({n: own[n].p_kw for n in names})
            priced = self._tso_solve(self.settlement)
            u = {n: -priced.lmp[self.feeders[n].bus] * opts.dt_hours / rho if priced.lmp else np.zeros(H) for n in names}
        n_values = len(names) * H
        sqrt_n = np.sqrt(n_values)
        converged = False
        for it in range(1, opts.admm_max_iterations + 1):
            # TSO: min c_T + rho/2 |mult p / 1000 - (y - u)|^2 = c_T + kappa |p / 1000 - center|^2
            self.tso.set_proximal({n: rho / 2 * mult[n] ** 2 for n in names},
                                  {n: 1000.0 * (y[n] - u[n]) / mult[n] for n in names})
            planned = self._tso_solve(self.tso)
            x = {n: mult[n] * planned.p_kw[n] / 1000.0 for n in names}
            for n in names:
                exchange.send(TSO, dso(n), "interface P and price", (planned.p_kw[n], rho * u[n]), iteration=it)
            # DSOs, per copy: min c_f + rho mult / 2 |p / 1000 - (x + u) / mult|^2
            out = self.pool.call("admm", {n: {"center_kw": 1000.0 * (x[n] + u[n]) / mult[n],
                                              "kappa": rho * mult[n] / 2} for n in names})
            y_previous = y
            y = {n: mult[n] * out[n].p_kw / 1000.0 for n in names}
            for n in names:
                exchange.send(dso(n), TSO, "interface P", out[n].p_kw, iteration=it)
                u[n] = u[n] + x[n] - y[n]
            xs, ys, us = (np.concatenate([v[n] for n in names]) for v in (x, y, u))
            primal = float(np.linalg.norm(xs - ys))
            dual = float(rho * np.linalg.norm(ys - np.concatenate([y_previous[n] for n in names])))
            eps_pri = sqrt_n * opts.admm_eps_abs + opts.admm_eps_rel * max(np.linalg.norm(xs), np.linalg.norm(ys))
            eps_dual = sqrt_n * opts.admm_eps_abs + opts.admm_eps_rel * rho * float(np.linalg.norm(us))
            exchange.residuals.append({"iteration": it, "primal": primal, "dual": dual, "eps_primal": float(eps_pri),
                                       "eps_dual": float(eps_dual), "rho": rho,
                                       "tso_cost": sum(planned.terms[k] for k in TRANSMISSION_TERMS),
                                       "dso_cost": sum(mult[n] * out[n].cost for n in names)})
            if primal <= eps_pri and dual <= eps_dual:
                converged = True
                break
            if opts.admm_adaptive_rho:
                if primal > 10.0 * dual:
                    rho *= 2.0
                    u = {n: v / 2.0 for n, v in u.items()}
                elif dual > 10.0 * primal:
                    rho /= 2.0
                    u = {n: v * 2.0 for n, v in u.items()}
        exchange.iterations = it
        exchange.converged = converged
        self._state = (y, u, rho)
        # The DSOs' last dispatch is what happens: read it in full, without solving again.
        final = self.pool.call("reread", {n: {"model": "admm"} for n in names})
        return final, {n: planned.p_kw[n] for n in names}


SCHEMES: dict[str, type] = {
    "tso_managed": CentralizedProblem,
    "hybrid": HybridProblem,
    "dso_managed": DsoManagedProblem,
    "dso_first": DsoFirstProblem,
    "admm": AdmmProblem,
}
