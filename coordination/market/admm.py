"""The common market cleared without a central model: ADMM between the TSO and the DSOs.

Each SO solves its own part with its own grid only. The TSO clears its bids under its limits
with each DSO's extra import `p[d,t]` a free variable; each DSO clears its bids under its
limits, its import `q[d,t]` made by its bids. They agree on the interface by consensus ADMM
(scaled form, penalty `rho`, currency per MW² of disagreement per period):

    p <- argmin  f_TSO(x, p) + rho/2 Σ (p - q + u)²        (the TSO)
    q <- argmin  f_d(x, q)   + rho/2 Σ (p - q + u)²        (each DSO, in parallel)
    u <- u + p - q

What crosses the interface is the imports and the scaled prices `u`; no network model. At
convergence `-rho u[d,t] / hours_t` is the interface price per MWh a DSO pays for its extra
import (the common market's head-row dual, `clearing.interface_prices`). Every sub-problem is a QP (HiGHS), kept and re-solved with new linear terms: divisible
bids only (HiGHS has no mixed-integer QP).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np

from coordination.market.case import TSO, MarketCase, effects, violations
from coordination.market.clearing import _all, _of
from coordination.market.layer import Layer, LayerModel


@dataclass
class AdmmOutcome:
    cleared_mw: np.ndarray  # [bid, period]
    imports_mw: dict[str, np.ndarray]  # the DSOs' side (made by their bids)
    prices: dict[str, np.ndarray]  # per MWh a DSO pays for extra import, -rho u / hours
    cost: float  # procurement: the cleared bids at their prices
    iterations: int
    converged: bool
    primal_residual: float  # max |p - q| (MW)
    violations: dict[str, float]
    solve_s: float
    history: list[float]  # primal residual per iteration


def _with_hessian(model: LayerModel, columns: list[int], rho: float) -> None:
    """rho on the diagonal of the given columns: the proximal term's quadratic part."""
    n = model.n_cols
    has = np.zeros(n, dtype=np.int32)
    has[columns] = 1
    start = np.concatenate([[0], np.cumsum(has)]).astype(np.int32)
    index = np.flatnonzero(has).astype(np.int32)
    model.highs.passHessian(n, len(index), highspy.HessianFormat.kTriangular, start, index, np.full(len(index), rho))


def admm(case: MarketCase, rho: float = 10.0, max_iterations: int = 500, tol_mw: float = 1e-5) -> AdmmOutcome:
    """Clear the common market by ADMM (module docstring); stops when every interface agrees
    within `tol_mw` (primal residual) and the DSOs' side moved less than `tol_mw` in the last
    iteration (dual residual, over rho)."""
    if any(b.integer for b in case.bids):
        raise ValueError("ADMM clears divisible bids only: block, partial and exclusive bids need the central common market")
    started = time.perf_counter()
    T, dsos = case.periods, list(case.dsos)
    quantity = _all(case)
    tso = LayerModel(case, Layer("admm tso", TSO, _of(case, TSO), quantity, {TSO}, open=set(dsos)))
    parts = {d: LayerModel(case, Layer(f"admm {d}", d, _of(case, d), quantity, {d}, {d})) for d in dsos}
    tso_cols = {d: np.array([tso.imp[d, t] for t in range(T)], dtype=np.int32) for d in dsos}
    _with_hessian(tso, [int(c) for cols in tso_cols.values() for c in cols], rho)
    dso_cols = {d: np.array([parts[d].imp[d, t] for t in range(T)], dtype=np.int32) for d in dsos}
    for d in dsos:
        _with_hessian(parts[d], list(dso_cols[d]), rho)
    p = {d: np.zeros(T) for d in dsos}
    q = {d: np.zeros(T) for d in dsos}
    u = {d: np.zeros(T) for d in dsos}
    history: list[float] = []
    converged = False
    results = {}
    for iteration in range(1, max_iterations + 1):
        for d in dsos:
            tso.highs.changeColsCost(T, tso_cols[d], rho * (u[d] - q[d]))
        results[TSO] = tso.solve()
        p = {d: results[TSO].imports_mw[d] for d in dsos}
        q_before = {d: q[d].copy() for d in dsos}
        for d in dsos:
            parts[d].highs.changeColsCost(T, dso_cols[d], -rho * (p[d] + u[d]))
            results[d] = parts[d].solve()
            q[d] = results[d].imports_mw[d]
        if not all(r.optimal for r in results.values()):
            failed = [so for so, r in results.items() if not r.optimal]
            raise RuntimeError(f"ADMM iteration {iteration}: {', '.join(failed)} did not solve ({results[failed[0]].status})")
        moved = max(float(np.abs(p[d] - q[d]).max(initial=0.0)) for d in dsos) if dsos else 0.0
        # The dual residual: how far the DSOs' side moved (what changes the TSO's next prices).
        settled = max(float(np.abs(q[d] - q_before[d]).max(initial=0.0)) for d in dsos) if dsos else 0.0
        u = {d: u[d] + p[d] - q[d] for d in dsos}
        history.append(moved)
        if moved <= tol_mw and settled <= tol_mw:
            converged = True
            break
    cleared = sum(r.cleared_mw for r in results.values())
    mult = {TSO: 1.0, **{d: g.multiplier for d, g in case.dsos.items()}}
    cost = float(sum(b.price @ (cleared[k] * case.hours) * mult[b.so] for k, b in enumerate(case.bids)))
    # The DSO is paid rho u per MW it imports (its linear term): the price it pays is -rho u.
    return AdmmOutcome(cleared, effects(case, cleared)["imports_mw"], {d: -rho * u[d] / case.hours for d in dsos}, cost,
                       iteration, converged, history[-1] if history else 0.0, violations(case, cleared),
                       time.perf_counter() - started, history)
