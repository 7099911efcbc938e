"""HiGHS through pyomo's persistent interface: build once, update Params, re-solve.

`pyomo.contrib.solver`'s "highs" (the successor of APPSI's appsi_highs; both work with
pyomo 6.10.1 and highspy 1.15.1, this one is a little faster here) keeps the HiGHS model
alive between solves. On a re-solve it only pushes the changed mutable Params (right-hand
sides, bounds and coefficients) into HiGHS, which then warm-starts LPs from the last basis.

Models built here change only through mutable Params, so the automatic checks for new or
removed components, changed constraints, variables, named expressions and objectives are
switched off: they walk the whole model on every solve. Call `PersistentHighs.rebuild()`
after changing the model's structure.

Solutions are not loaded into the model wholesale: `load` and `values` read back only
the variables asked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import pyomo.environ as pyo
from pyomo.common.timing import HierarchicalTimer
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs


@dataclass
class SolveStats:
    status: str  # "optimal", "infeasible", "unbounded", "time limit", ...
    optimal: bool
    objective: float | None
    solve_s: float  # wall time of the whole solve call (update + HiGHS + result status)
    highs_s: float  # time inside HiGHS' run
    update_s: float  # pushing changed Params into HiGHS (or building the HiGHS model, first time)
    first: bool  # the solve that built the HiGHS model


_STATUS = {
    TerminationCondition.convergenceCriteriaSatisfied: "optimal",
    TerminationCondition.provenInfeasible: "infeasible",
    TerminationCondition.infeasibleOrUnbounded: "infeasible or unbounded",
    TerminationCondition.unbounded: "unbounded",
    TerminationCondition.maxTimeLimit: "time limit",
    TerminationCondition.iterationLimit: "iteration limit",
}


class PersistentHighs:
    """A persistent HiGHS solver bound to one pyomo model."""

    def __init__(self, model: pyo.Block, time_limit: float | None = None, mip_rel_gap: float | None = None,
                 options: dict | None = None):
        self.model = model
        self.solver = Highs()
        config = self.solver.config
        config.load_solutions = False
        config.raise_exception_on_nonoptimal_result = False
        config.time_limit = time_limit
        config.rel_gap = mip_rel_gap
        config.solver_options = dict(options or {})
        updates = config.auto_updates
        for name in ("check_for_new_or_removed_constraints", "check_for_new_or_removed_vars",
                     "check_for_new_or_removed_params", "check_for_new_objective", "update_constraints",
                     "update_vars", "update_named_expressions", "update_objective"):
            setattr(updates, name, False)
        updates.update_parameters = True
        self._built = False
        self._results = None

    def rebuild(self) -> None:
        """Rebuild the HiGHS model on the next solve (after structural changes)."""
        self._built = False

    def solve(self) -> SolveStats:
        timer = HierarchicalTimer()
        first = not self._built
        start = time.perf_counter()
        if first:
            self.solver.set_instance(self.model)  # timed as "update" below
            self._built = True
        built = time.perf_counter()
        results = self.solver.solve(self.model, timer=timer)
        wall = time.perf_counter() - start
        self._results = results
        highs = _timer_total(timer, "optimize")
        update = (built - start) + _timer_total(timer, "update")
        ok = results.solution_status in (SolutionStatus.optimal, SolutionStatus.feasible)
        status = _STATUS.get(results.termination_condition, str(results.termination_condition.name))
        if status == "time limit" and ok:
            status = "time limit (feasible)"
        return SolveStats(status, results.termination_condition == TerminationCondition.convergenceCriteriaSatisfied,
                          results.incumbent_objective, wall, highs, update, first)

    def values(self, variables: Iterable) -> dict:
        """Solution values of the given variables (VarData or indexed Vars), keyed by VarData."""
        flat = list(_flatten(variables))
        return dict(self._results.solution_loader.get_vars(flat).items()) if flat else {}

    def load(self, variables: Iterable) -> None:
        """Load the solution values of only these variables into the model (so Expressions over
        them can be evaluated with pyo.value)."""
        flat = list(_flatten(variables))
        if flat:
            self._results.solution_loader.load_vars(flat)

    def duals(self, constraints: Iterable) -> dict:
        """Duals of the given constraints (LPs only), keyed by ConstraintData: the change of the
        objective per unit increase of the constraint's right-hand side."""
        flat = []
        for c in constraints:
            flat.extend(c.values() if c.is_indexed() else [c])
        return dict(self._results.solution_loader.get_duals(flat).items())


def _flatten(variables: Iterable):
    for v in variables:
        if v.is_indexed():
            yield from v.values()
        else:
            yield v


def _timer_total(timer: HierarchicalTimer, name: str) -> float:
    try:
        return float(timer.get_total_time(name))
    except (KeyError, RuntimeError):
        return 0.0
