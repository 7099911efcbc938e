"""The augmented-Lagrangian term of ADMM, kappa (v - center)^2, as a linear program.

HiGHS' active-set QP solver stalls on these models (a large LP whose objective bends in
only a few variables: thousands of iterations without progress, at any scaling of the
term), so the square is replaced by the upper envelope of its tangents at breakpoints
d_k (MW), geometric from 1e-5 MW to 2^23 1e-5 MW (about 84 MW) on either side:

    e[t] >= 2 d_k (v[t] - center[t]) - d_k^2,  e[t] >= 0,   term = kappa sum_t e[t].

The envelope equals d^2 at every breakpoint and lies at most 1/9 below it between two
(at d = 1.5 d_k); below 1e-5 MW (10 W) it is flat, which bounds how closely the copies can
agree (far below ADMM's tolerances). Coefficients are fixed; kappa sits in the objective
and the center in right-hand sides, so new values are a warm re-solve.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyomo.environ as pyo

SMALLEST_MW = 1e-5
DOUBLINGS = 23


def breakpoints() -> np.ndarray:
    """Tangent points of the envelope (MW), both signs."""
    positive = SMALLEST_MW * 2.0 ** np.arange(DOUBLINGS + 1)
    return np.concatenate([-positive[::-1], positive])


def add_proximal(b: pyo.Block, value_mw: Callable[[int], object]) -> None:
    """b.kappa (currency per MW^2) and b.proximal, the envelope of kappa sum_t (value_mw(t) -
    center[t])^2 over b.T, the center set by `set_center` (MW; 0 at first)."""
    cuts = breakpoints()
    b.kappa = pyo.Param(mutable=True, initialize=0.0)
    b.prox = pyo.Var(b.T, bounds=(0.0, None))
    b.prox_points = pyo.Set(initialize=range(len(cuts)), ordered=True)
    # Right-hand sides -2 d_k center - d_k^2 as bare Params: re-sent without evaluating expressions.
    b.prox_rhs = pyo.Param(b.prox_points, b.T, mutable=True, initialize=lambda _, k, t: -cuts[k] ** 2)
    b.prox_cut = pyo.Constraint(b.prox_points, b.T, rule=lambda _, k, t: b.prox[t] - 2.0 * cuts[k] * value_mw(t)
                                >= b.prox_rhs[k, t])
    b.proximal = pyo.Expression(expr=b.kappa * pyo.quicksum(b.prox[t] for t in b.T))


def set_center(b: pyo.Block, center_mw) -> None:
    """The center of a block's proximal term, per period (MW) or one number."""
    cuts = breakpoints()
    periods = list(b.T)
    center = np.broadcast_to(np.asarray(center_mw, dtype=float), (len(periods),))
    rhs = -2.0 * cuts[:, None] * center[None, :] - cuts[:, None] ** 2
    for k in range(len(cuts)):
        for j, t in enumerate(periods):
            b.prox_rhs[k, t] = float(rhs[k, j])
