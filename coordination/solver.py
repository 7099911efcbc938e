"""HiGHS through pyomo's persistent interface: build once, update Params, re-solve.

`pyomo.contrib.solver`'s "highs" (the successor of APPSI's appsi_highs; both work with
pyomo 6.10.1 and highspy 1.15.1) turns the pyomo model into a live HiGHS model once,
and records which row and column bounds depend on which mutable Params. Re-solves then
need only those bounds re-sent; HiGHS warm-starts LPs from its last basis.

The interface's own re-solve path costs more than the solve itself on large LPs: every
call re-indexes its constraint maps, and every Param-dependent bound is sent with its own
call. `PersistentHighs` therefore lets the interface build the model (`set_instance`) and
then drives the highspy object directly: the Param-dependent row and column bounds the
interface recorded are re-evaluated and sent in one vectorised call each, HiGHS runs, and
only the requested columns are read back, as numpy arrays or linear forms evaluated on
the solution vector. This uses the interface's bookkeeping attributes (pinned pyomo
6.10.1), checked by the tests against the interface's own results.

Mutable Params are best kept out of constraint coefficients: HiGHS drops its
factorisation when a coefficient changes, making warm re-solves several times slower
(they are still supported, sent one by one). Params in right-hand sides, variable bounds
and the objective are cheap. Rewritten constraints go through `replace_constraints`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.contrib.solver.solvers.highs import Highs, _MutableConstraintBounds
from pyomo.repn import generate_standard_repn


@dataclass
class SolveStats:
    status: str  # "optimal", "infeasible", "unbounded", "time limit", ...
    optimal: bool
    objective: float | None
    solve_s: float  # the whole call: update + HiGHS + fetching the solution vector
    highs_s: float  # inside HiGHS' run
    update_s: float  # sending changed Params to HiGHS (first solve: building the HiGHS model)
    first: bool  # the solve that built the HiGHS model

    def after(self, before: "SolveStats") -> "SolveStats":
        """These stats of a follow-up solve with the times of the solves before it added."""
        self.solve_s += before.solve_s
        self.highs_s += before.highs_s
        self.update_s += before.update_s
        return self


# How HiGHS solves an LP without a usable basis (see `Options.cold_solver`); "auto" takes
# interior point from this many columns on (small LPs: the simplex, as fast and with the
# vertex chains of LPs the schemes' tests pin down).
COLD_SOLVERS = ("auto", "simplex", "ipm")
IPM_MIN_COLUMNS = 50_000

# How batteries' no-simultaneous-charge-and-discharge binaries are handled (see `Options`).
BATTERY_BINARIES = ("mip", "relaxed", "relax-and-check", "relax-and-fix")

_STATUS = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kInfeasible: "infeasible",
    highspy.HighsModelStatus.kUnboundedOrInfeasible: "infeasible or unbounded",
    highspy.HighsModelStatus.kUnbounded: "unbounded",
    highspy.HighsModelStatus.kTimeLimit: "time limit",
    highspy.HighsModelStatus.kIterationLimit: "iteration limit",
}


@dataclass
class LinearForm:
    """A linear expression as columns, coefficients and a (possibly Param-dependent) constant."""

    cols: np.ndarray
    coefs: np.ndarray
    constant: object

    def value(self, x: np.ndarray) -> float:
        return float(pyo.value(self.constant) + self.coefs @ x[self.cols])


class PersistentHighs:
    """A persistent HiGHS solver bound to one pyomo model."""

    def __init__(self, model: pyo.Block, time_limit: float | None = None, mip_rel_gap: float | None = None,
                 options: dict | None = None, cold_solver: str = "auto"):
        if cold_solver not in COLD_SOLVERS:
            raise ValueError(f"cold_solver must be one of {', '.join(COLD_SOLVERS)} (got {cold_solver!r})")
        self.model = model
        self.cold_solver = cold_solver
        self._cold = True  # no basis worth starting from: the next solve is cold
        self.interface = Highs()
        config = self.interface.config
        config.load_solutions = False
        config.raise_exception_on_nonoptimal_result = False
        self.options = {"output_flag": False, **(options or {})}
        if time_limit is not None:
            self.options["time_limit"] = float(time_limit)
        if mip_rel_gap is not None:
            self.options["mip_rel_gap"] = float(mip_rel_gap)
        self.highs: highspy.Highs | None = None
        self._x = np.empty(0)
        self._row_dual = np.empty(0)
        self._dual_valid = False

    # -- building and updating --------------------------------------------------------------
    def _build(self) -> None:
        self.interface.set_instance(self.model)
        self.highs = self.interface._solver_model
        for key, value in self.options.items():
            self.highs.setOptionValue(key, value)
        self._index()

    def _index(self) -> None:
        """Where the Param-dependent bounds sit: rows and columns, with their expressions."""
        it = self.interface
        rows, row_lo, row_hi, others = [], [], [], []
        for con, helpers in it._mutable_helpers.items():
            for helper in helpers:
                if isinstance(helper, _MutableConstraintBounds):
                    rows.append(it._pyomo_con_to_solver_con_map[con])
                    row_lo.append(helper.lower_expr)
                    row_hi.append(helper.upper_expr)
                else:  # Param-dependent coefficients: rare, sent one by one
                    others.append(helper)
        self._rows = np.array(rows, dtype=np.int32)
        self._row_lo, self._other_helpers = row_lo, others
        self._row_hi_all = row_hi
        self._row_position = {row: i for i, row in enumerate(rows)}
        # Equality rows carry one expression for both bounds: evaluate it once.
        self._row_split = np.array([lo is not hi for lo, hi in zip(row_lo, row_hi)], dtype=bool)
        self._row_hi = [hi for hi, split in zip(row_hi, self._row_split) if split]
        cols, col_lo, col_hi = [], [], []
        for var_id, (_, helper) in it._mutable_bounds.items():
            cols.append(it._pyomo_var_to_solver_var_map[var_id])
            col_lo.append(helper.lower_expr)
            col_hi.append(helper.upper_expr)
        self._cols = np.array(cols, dtype=np.int32)
        self._col_lo, self._col_hi = col_lo, col_hi

    def push_parameters(self) -> None:
        """Re-evaluate every Param-dependent bound and send them to HiGHS."""
        if len(self._rows):
            lo = _evaluate(self._row_lo)
            hi = lo.copy()
            hi[self._row_split] = _evaluate(self._row_hi)
            self.highs.changeRowsBounds(len(self._rows), self._rows, lo, hi)
        if len(self._cols):
            self.highs.changeColsBounds(len(self._cols), self._cols, _evaluate(self._col_lo), _evaluate(self._col_hi))
        for helper in self._other_helpers:
            helper.update()
        self.interface._mutable_objective.update()

    def push_rows(self, constraints: Iterable) -> None:
        """Re-evaluate and send the Param-dependent bounds of only these constraints (indexed
        or not): when nothing else changed, cheaper than `push_parameters` on a large model."""
        con_map = self.interface._pyomo_con_to_solver_con_map
        flat = [con for c in constraints for con in (c.values() if c.is_indexed() else [c])]
        pos = np.array([self._row_position[con_map[con]] for con in flat if con_map[con] in self._row_position], dtype=np.int64)
        if len(pos):
            lo = _evaluate([self._row_lo[i] for i in pos])
            hi = _evaluate([self._row_hi_all[i] for i in pos])
            self.highs.changeRowsBounds(len(pos), self._rows[pos], lo, hi)

    def push_objective(self) -> None:
        """Send only the objective's Param-dependent coefficients and constant."""
        self.interface._mutable_objective.update()

    def replace_constraints(self, constraints: list) -> None:
        """Tell HiGHS about constraints whose expressions were rewritten (set_value)."""
        if self.highs is not None and constraints:
            self.interface.remove_constraints(constraints)
            self.interface.add_constraints(constraints)
            self._index()  # rows moved

    def update_coefficients(self, constraints: list) -> None:
        """Constraints rewritten (set_value) with new coefficients on the same variables, e.g. a
        regulator's ratio: changed in place, so rows keep their places and HiGHS its basis
        (removing and adding them would cost the warm start)."""
        if self.highs is None or not constraints:
            return
        self._cold = True  # HiGHS drops its factorisation, and the old basis is a poor start
        con_map = self.interface._pyomo_con_to_solver_con_map
        var_map = self.interface._pyomo_var_to_solver_var_map
        for con in constraints:
            repn = generate_standard_repn(con.body, quadratic=False, compute_values=True)
            if repn.constant or not repn.is_linear():
                self.replace_constraints([con])  # the bounds move too: let pyomo redo the row
                continue
            row = con_map[con]
            for var, coef in zip(repn.linear_vars, repn.linear_coefs):
                self.highs.changeCoeff(row, var_map[id(var)], float(coef))

    def replace_objective(self) -> None:
        """Tell HiGHS about a rewritten objective."""
        if self.highs is not None:
            self.interface.set_objective(self.model.component_data_objects(pyo.Objective, active=True).__next__())

    def set_integer(self, variables, integer: bool = True) -> None:
        """Make the given (continuous, bounded) variables integer in HiGHS or back again, without
        touching the pyomo model (for relax-and-check: an LP first, a MIP only when needed)."""
        cols = self.positions(variables).astype(np.int32)
        kind = highspy.HighsVarType.kInteger if integer else highspy.HighsVarType.kContinuous
        self.highs.changeColsIntegrality(len(cols), cols, np.array([kind] * len(cols)))

    def set_bounds(self, variables, lower, upper) -> None:
        """Change variable bounds in HiGHS only (the pyomo model keeps its own), e.g. to fix
        a battery's direction for one re-solve."""
        cols = self.positions(variables).astype(np.int32)
        lo = np.broadcast_to(np.asarray(lower, dtype=float), cols.shape).copy()
        hi = np.broadcast_to(np.asarray(upper, dtype=float), cols.shape).copy()
        self.highs.changeColsBounds(len(cols), cols, lo, hi)

    def rebuild(self) -> None:
        """Build the HiGHS model anew on the next solve (after other structural changes)."""
        self.highs = None
        self._cold = True

    def _interior(self) -> bool:
        if self.cold_solver == "auto":
            return self.highs.getNumCol() >= IPM_MIN_COLUMNS
        return self.cold_solver == "ipm"

    def _has_integers(self) -> bool:
        integrality = self.highs.getLp().integrality_
        return any(kind != highspy.HighsVarType.kContinuous for kind in integrality)

    # -- solving ------------------------------------------------------------------------------
    def solve(self, push: bool = True) -> SolveStats:
        """Solve; `push=False` skips re-sending the Params (nothing changed since the last solve)."""
        start = time.perf_counter()
        first = self.highs is None
        if first:
            self._build()
            self._cold = True
        elif push:
            self.push_parameters()
        if "time_limit" in self.options:
            # HiGHS measures its time limit on a clock that keeps running across solves.
            self.highs.setOptionValue("time_limit", self.highs.getRunTime() + self.options["time_limit"])
        updated = time.perf_counter()
        # Cold LPs by interior point if so chosen, with crossover so that a basis is left for
        # the warm re-solves, which stay on the simplex ("choose": HiGHS' dual simplex for LPs).
        interior = self._cold and self._interior() and not self._has_integers()
        if interior:
            self.highs.setOptionValue("solver", "ipm")
            self.highs.setOptionValue("run_crossover", "on")
        self.highs.run()
        if interior:
            self.highs.setOptionValue("solver", "choose")
        self._cold = False
        ran = time.perf_counter()
        status = self.highs.getModelStatus()
        info = self.highs.getInfo()
        solution = self.highs.getSolution()
        # After a warm start HiGHS may call a model optimal while flagging its point as slightly
        # infeasible (after unscaling): the point is still the answer, so it is taken.
        feasible = info.primal_solution_status == 2 or (status == highspy.HighsModelStatus.kOptimal and solution.value_valid)
        self._x = np.asarray(solution.col_value) if feasible else np.empty(0)
        self._dual_valid = bool(solution.dual_valid) and info.mip_node_count == -1
        self._row_dual = np.asarray(solution.row_dual) if self._dual_valid else np.empty(0)
        name = _STATUS.get(status, self.highs.modelStatusToString(status))
        if name == "time limit" and feasible:
            name = "time limit (feasible)"
        elif name == "optimal" and not feasible:
            name = "optimal without a solution"  # a failed solve to the callers: nothing to read
        optimal = status == highspy.HighsModelStatus.kOptimal and feasible
        return SolveStats(name, optimal, info.objective_function_value if feasible else None,
                          time.perf_counter() - start, ran - updated, updated - start, first)

    # -- reading the solution -------------------------------------------------------------------
    def positions(self, variables: Iterable) -> np.ndarray:
        """Column of each variable (a Var, or an iterable of VarData or Vars, flattened in order)."""
        var_map = self.interface._pyomo_var_to_solver_var_map
        return np.array([var_map[id(v)] for v in _flatten(variables)], dtype=np.int64)

    def solution(self) -> np.ndarray:
        """The whole solution vector (by column)."""
        return self._x

    def linear(self, expr) -> LinearForm:
        """A linear expression of the model as a form to evaluate on solution vectors."""
        repn = generate_standard_repn(expr, compute_values=False, quadratic=False)
        if repn.nonlinear_expr is not None:
            raise ValueError("not a linear expression")
        var_map = self.interface._pyomo_var_to_solver_var_map
        cols = np.array([var_map[id(v)] for v in repn.linear_vars], dtype=np.int64)
        coefs = np.array([pyo.value(c) for c in repn.linear_coefs], dtype=float)
        return LinearForm(cols, coefs, repn.constant)

    def values(self, variables: Iterable) -> ComponentMap:
        """Solution values of the given variables, keyed by VarData (which are not hashable)."""
        flat = list(_flatten(variables))
        x = self._x[self.positions(flat)] if flat else []
        return ComponentMap(zip(flat, (float(v) for v in x)))

    def load(self, variables: Iterable) -> None:
        """Load the solution values of only these variables into the model (so Expressions over
        them can be evaluated with pyo.value)."""
        flat = list(_flatten(variables))
        for var, x in zip(flat, self._x[self.positions(flat)]):
            var.set_value(float(x), skip_validation=True)

    def duals(self, constraints: Iterable) -> ComponentMap:
        """Duals of the given constraints (LPs only): the change of the objective per unit
        increase of the constraint's right-hand side."""
        if not self._dual_valid:
            raise RuntimeError("no duals: the last solve was not an LP solved to optimality")
        con_map = self.interface._pyomo_con_to_solver_con_map
        out = ComponentMap()
        for c in constraints:
            for con in (c.values() if c.is_indexed() else [c]):
                out[con] = float(self._row_dual[con_map[con]])
        return out


def _evaluate(exprs: list) -> np.ndarray:
    # Most bounds are a bare Param (or a number): read them without the expression walker.
    return np.fromiter((e if e.__class__ is float else e.value if hasattr(e, "is_parameter_type")
                        and e.is_parameter_type() else pyo.value(e) for e in exprs), dtype=float, count=len(exprs))


def _flatten(variables):
    """VarData from a Var (indexed or not) or an iterable of them."""
    if hasattr(variables, "is_indexed"):
        variables = [variables]
    for v in variables:
        if v.is_indexed():
            yield from v.values()
        else:
            yield v


class BatteryDirections:
    """Keeps batteries from charging and discharging at once in the LP relaxation of their
    direction binaries `u` (1 allows charging only). When it does so, the LP uses the battery's
    losses as a sink for energy it values below zero: charging and discharging x at once
    draws x (1 - eta_c eta_d) for a throughput cost of price x (1 + eta_c eta_d), about
    20 x the throughput price per MWh burnt at 0.95 / 0.95. The relaxation is exact wherever a
    cheaper sink exists (PV curtailment below that price, as on `runs/pv_centralized.yaml`,
    where no plan of a day needed a re-solve); at night on the benchmark feeders the soft
    voltage limits make absorbing P worth thousands per MWh at some batteries, no PV is there to
    curtail, and the same battery-periods burn plan after plan. Then:

    - "relax-and-check": solve again with the binaries integer (a MIP);
    - "relax-and-fix": fix each offending battery-period to the direction it mostly took and
      re-solve as an LP, up to ten rounds, then free them again for the next solve.

    A receding horizon moves one period per plan (`advance`): relax-and-fix then starts the
    next solve with the directions it had to fix, moved along, so the first LP of a re-solve
    is usually exact and no second LP is needed (measured in `benchmarks/battery_rounds.py`).
    Any battery-period still charging and discharging gets the rounds as before, so plans
    never do both.
    """

    def __init__(self, solver: PersistentHighs, batteries: list, mode: str, tol_kw: float = 1e-6):
        self.solver, self.batteries, self.mode, self.tol_kw = solver, batteries, mode, tol_kw
        self._cols: tuple[np.ndarray, np.ndarray] | None = None
        self.rounds = 0  # re-solves the last `enforce` needed (0: the first LP was already exact)
        # Directions fixed by the last solve (flattened like the u variables): mask and 1 = charge.
        self._fixed: np.ndarray | None = None
        self._charging: np.ndarray | None = None
        self.carried = 0  # battery-periods the last solve started with fixed (`advance`)
        self._pending = False  # carried directions waiting for the next solve

    def _flat(self) -> list:
        return [v for d in self.batteries for v in d.u.values()]

    def advance(self, periods: int) -> None:
        """The next solve's horizon starts `periods` later: carry the directions the last
        solve fixed, moved along, into it (relax-and-fix only)."""
        if self.mode != "relax-and-fix" or self._fixed is None or not self.batteries:
            return
        n = len(self.batteries[0].u)
        fixed = self._fixed.reshape(len(self.batteries), n)
        charging = self._charging.reshape(len(self.batteries), n)
        moved, moved_charging = np.zeros_like(fixed), np.zeros_like(charging)
        if periods < n:
            moved[:, :n - periods] = fixed[:, periods:]
            moved_charging[:, :n - periods] = charging[:, periods:]
        self._fixed, self._charging = moved.ravel(), moved_charging.ravel()
        self._pending = True

    def prepare(self) -> None:
        """Before a solve: fix the carried directions (see `advance`) in HiGHS."""
        self.carried = 0
        if not self._pending or self.solver.highs is None:
            return
        self._pending = False
        if self._fixed.any():
            flat = self._flat()
            self.solver.set_bounds([v for v, f in zip(flat, self._fixed) if f], self._charging[self._fixed],
                                   self._charging[self._fixed])
            self.carried = int(self._fixed.sum())

    def simultaneous(self, stats: SolveStats) -> np.ndarray:
        """Per battery and period (flattened like the batteries' u variables): charging and
        discharging at once in the last solution."""
        if stats.status not in ("optimal", "time limit (feasible)") or not self.batteries:
            return np.zeros(0, dtype=bool)
        charge, discharge = self._columns()
        x = self.solver.solution()
        if not x.size:
            return np.zeros(len(charge), dtype=bool)
        return np.minimum(x[charge], x[discharge]) > self.tol_kw

    def enforce(self, stats: SolveStats) -> tuple[SolveStats, bool]:
        """Re-solve as the mode says if the last solution (of `stats`) has a battery doing both;
        returns the final stats (times of every solve added) and whether a re-solve was needed
        (or carried directions were fixed in the first)."""
        self.rounds = 0
        carried = self.carried > 0
        if self.mode not in ("relax-and-check", "relax-and-fix"):
            return stats, False
        if not self.simultaneous(stats).any():
            self._release(self._fixed if carried else None, self._charging if carried else None)
            return stats, carried
        binaries = [d.u for d in self.batteries]
        if self.mode == "relax-and-check":
            self.solver.set_integer(binaries, True)
            stats = self.solver.solve(push=False).after(stats)
            self.solver.set_integer(binaries, False)
            self.rounds = 1
            return stats, True
        flat = self._flat()
        fixed = self._fixed.copy() if carried else np.zeros(len(flat), dtype=bool)
        direction = self._charging.copy() if carried else np.zeros(len(flat))
        for _ in range(10):
            both = self.simultaneous(stats)
            if not both.any():
                break
            x = self.solver.solution()
            charge, discharge = self._columns()
            charging = (x[charge] >= x[discharge]).astype(float)
            self.solver.set_bounds([v for v, b in zip(flat, both) if b], charging[both], charging[both])
            fixed |= both
            direction[both] = charging[both]
            stats = self.solver.solve(push=False).after(stats)
            self.rounds += 1
        self._release(fixed, direction)
        return stats, True

    def _release(self, fixed: np.ndarray | None, direction: np.ndarray | None) -> None:
        """Free the fixed directions in HiGHS again, remembering them for `advance`."""
        if fixed is None or not fixed.any():
            self._fixed, self._charging = None, None
            return
        self._fixed, self._charging = fixed, direction
        self.solver.set_bounds([v for v, f in zip(self._flat(), fixed) if f], 0.0, 1.0)  # free for the next solve

    def _columns(self) -> tuple[np.ndarray, np.ndarray]:
        if self._cols is None:
            self._cols = (self.solver.positions([d.p_ch for d in self.batteries]),
                          self.solver.positions([d.p_dis for d in self.batteries]))
        return self._cols
