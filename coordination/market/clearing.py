"""The TSO-DSO flexibility market models, as sequences of layers (`coordination.market.layer`).

- `common`: one market, every bid, every grid's limits, interfaces free; the efficiency bound.
- `disjoint`: each SO procures from its own grid for its own needs, balanced, so its
  procurement leaves every interface flow where it was.
- `fragmented`: Layer 1, each DSO from its own bids under its own limits (its import may
  move, priced or not); Layer 2, the TSO from its own bids, restoring the balance and its
  limits with the imports Layer 1 left.
- `multilevel`: Layer 1 as fragmented; Layer 2, the TSO from its own bids and the unused
  portions of the DSOs' bids, forwarded one by one, kept safe for the distribution grids by
  one of `SAFETY`:
  - `none`: forwarded as they are, no distribution limit in Layer 2 (the unsafe reference);
  - `corrective`: as `none`, then Layer 3: each DSO removes, at the interface flow Layer 2
    fixed, the violations Layer 2 caused with what is left of its bids;
  - `prequalification`: each DSO forwards only the portions no combination of them can make
    violate its limits (the largest total such that the worst case of every row holds);
  - `rsf`: each DSO forwards a residual supply function instead of bids: the cost of moving
    its import by steps, from its own Layer-1 problem solved at each fixed step (its primal
    cost, not duals); the TSO clears the steps as bids at its boundary bus; each DSO then
    delivers what was cleared from its bids under its limits.

Interface pricing: `prices=None` leaves imports unpriced in Layer 1; otherwise DSO ->
currency per MWh per period, e.g. `interface_prices(common(case))`, the duals of the common
market's head rows, with which the sequential models reach the common market's cost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import highspy
import numpy as np

from coordination.market.bids import DOWN, UP, Bid
from coordination.market.case import TSO, MarketCase, effects, violations
from coordination.market.layer import Layer, LayerModel, LayerResult, run

MODELS = ("common", "disjoint", "fragmented", "multilevel")
SAFETY = ("none", "corrective", "prequalification", "rsf")


@dataclass
class Outcome:
    model: str
    cleared_mw: np.ndarray  # [bid, period], the case's bids
    layers: list[LayerResult]
    imports_mw: dict[str, np.ndarray]  # DSO -> import change against the baseline (MW, all copies)
    violations: dict[str, float]  # what the market's own grid model sees afterwards (`case.violations`)
    prices: dict[str, np.ndarray] | None  # interface prices Layer 1 used (per MWh)
    solve_s: float

    @property
    def cost(self) -> float:
        """Procurement cost: every cleared quantity at its bid's price."""
        return float(sum(layer.procurement for layer in self.layers))

    @property
    def penalty(self) -> float:
        return float(sum(layer.penalty for layer in self.layers))

    @property
    def optimal(self) -> bool:
        return all(layer.optimal for layer in self.layers)

    def cost_by_so(self) -> dict[str, float]:
        """What each SO paid for the flexibility its layers cleared."""
        out: dict[str, float] = {}
        for layer in self.layers:
            out[layer.procurer] = out.get(layer.procurer, 0.0) + layer.procurement
        return out


def _all(case: MarketCase) -> np.ndarray:
    return np.array([b.quantity_mw for b in case.bids]).reshape(len(case.bids), case.periods)


def _of(case: MarketCase, *sos: str) -> np.ndarray:
    return np.array([b.so in sos for b in case.bids], dtype=bool)


def _run(case: MarketCase, layers: list[tuple[Layer, np.ndarray]]) -> list[LayerResult]:
    return [LayerModel(case, layer, state).solve() for layer, state in layers]


def _outcome(case: MarketCase, model: str, results: list[LayerResult], prices=None, started: float = 0.0) -> Outcome:
    cleared = sum((r.cleared_mw for r in results), np.zeros((len(case.bids), case.periods)))
    return Outcome(model, cleared, results, effects(case, cleared)["imports_mw"], violations(case, cleared),
                   None if prices is None else dict(prices), time.perf_counter() - started)


# ------------------------------------------------------------------------------------------
# The models
# ------------------------------------------------------------------------------------------


def common(case: MarketCase) -> Outcome:
    started = time.perf_counter()
    layer = Layer("common", "common", np.ones(len(case.bids), bool), _all(case), set(case.sos), set(case.dsos))
    model = LayerModel(case, layer)
    result = model.solve()
    if model.is_mip and result.optimal:  # prices of the LP with the binaries at their values
        result.head_duals, result.balance_duals = _fixed_duals(case, layer, result)
    return _outcome(case, "common", [result], started=started)


class CommonGame:
    """The common market as a cooperative game for cost allocation: the cost of a coalition
    of SOs is the common market among its members alone (their bids, their grids' limits,
    interfaces free only between members; each non-member procures on its own, outside it).
    One model, re-solved per coalition with bounds changed (warm), never rebuilt."""

    def __init__(self, case: MarketCase):
        self.case = case
        self.model = self._build()
        self.solves = 0
        self.rebuilds = 0  # coalitions HiGHS could not solve from the kept model, warm or cold

    def _build(self) -> LayerModel:
        return LayerModel(self.case, Layer("common", "common", np.ones(len(self.case.bids), bool), _all(self.case),
                                           set(self.case.sos), set(self.case.dsos)))

    def __call__(self, coalition: frozenset[str]) -> float:
        unknown = set(coalition) - set(self.case.sos)
        if unknown:
            raise ValueError(f"unknown system operator in a coalition: {', '.join(sorted(unknown))}")
        self.model.restrict(set(coalition))
        status = run(self.model.highs)
        self.solves += 1
        if status != "Optimal":  # rarely, from a model built anew
            self.model = self._build()
            self.model.restrict(set(coalition))
            status = run(self.model.highs)
            self.rebuilds += 1
        if status != "Optimal":
            raise RuntimeError(f"coalition {sorted(coalition)}: the market did not clear ({status})")
        return self.model.objective()


def lagrangian_inputs(outcome: Outcome, case: MarketCase) -> tuple[dict[str, float], dict[str, float]]:
    """From a common market: what each SO's own bids cost (and the penalties of the limits of
    its grid the market left broken), and what each pays for its extra import at the interface
    prices (a DSO pays, the TSO is paid: they sum to zero)."""
    if outcome.model != "common":
        raise ValueError(f"the Lagrangian allocation needs the common market, not {outcome.model!r}")
    result = outcome.layers[0]
    own = dict.fromkeys(case.sos, 0.0)
    mult = {TSO: 1.0, **{d: g.multiplier for d, g in case.dsos.items()}}
    for k, b in enumerate(case.bids):
        own[b.so] += float(b.price @ (result.cleared_mw[k] * case.hours)) * mult[b.so]
    for so, penalty in result.penalty_by_so.items():  # a need left unmet costs its own grid's SO
        own[so] += penalty
    payment = {d: float(result.head_duals[d] @ outcome.imports_mw[d]) for d in case.dsos}
    payment[TSO] = -sum(payment.values())
    return own, payment


def interface_prices(outcome: Outcome, case: MarketCase) -> dict[str, np.ndarray]:
    """The common market's interface prices: the dual of each DSO's head row, per MWh. What
    one MW more of a DSO's import in a period costs the common market."""
    if outcome.model != "common":
        raise ValueError(f"interface prices come from the common market, not {outcome.model!r}")
    duals = outcome.layers[0].head_duals
    return {d: duals[d] / case.hours for d in case.dsos}


def disjoint(case: MarketCase) -> Outcome:
    started = time.perf_counter()
    quantity = _all(case)
    layers = [(Layer("tso", TSO, _of(case, TSO), quantity, {TSO}), None)]
    layers += [(Layer(d, d, _of(case, d), quantity, {d}), None) for d in case.dsos]
    return _outcome(case, "disjoint", _run(case, layers), started=started)


def _layer1(case: MarketCase, prices: Mapping[str, np.ndarray] | None) -> list[LayerResult]:
    prices = prices or {}
    quantity = _all(case)
    return _run(case, [(Layer(f"L1 {d}", d, _of(case, d), quantity, {d}, {d},
                              price={d: prices[d]} if d in prices else {}), None) for d in case.dsos])


def fragmented(case: MarketCase, prices: Mapping[str, np.ndarray] | None = None) -> Outcome:
    started = time.perf_counter()
    first = _layer1(case, prices)
    state = sum(r.cleared_mw for r in first)
    second = LayerModel(case, Layer("L2 tso", TSO, _of(case, TSO), _all(case), {TSO}), state).solve()
    return _outcome(case, "fragmented", [*first, second], prices, started)


def multilevel(case: MarketCase, prices: Mapping[str, np.ndarray] | None = None, safety: str = "prequalification") -> Outcome:
    if safety not in SAFETY:
        raise ValueError(f"safety must be one of {', '.join(SAFETY)} (got {safety!r})")
    started = time.perf_counter()
    first = _layer1(case, prices)
    state = sum((r.cleared_mw for r in first), np.zeros((len(case.bids), case.periods)))
    left = _all(case) - state
    if safety == "rsf":
        return _outcome(case, "multilevel", [*first, *_rsf(case, state, left)], prices, started)
    if safety == "prequalification":
        left = np.where(_of(case, TSO)[:, None], left, prequalified(case, state, left))
    everything = np.ones(len(case.bids), bool)
    second = LayerModel(case, Layer("L2 tso", TSO, everything, left, {TSO}, set(case.dsos)), state).solve()
    results = [*first, second]
    if safety == "corrective":
        state = state + second.cleared_mw
        left = left - second.cleared_mw
        fixed = effects(case, state)["imports_mw"]
        for d in case.dsos:
            # At the interface flow Layer 2 left: the DSO's bids must net zero at its head.
            results.append(LayerModel(case, Layer(f"L3 {d}", d, _of(case, d), left, {d}), state).solve())
            state = state + results[-1].cleared_mw
        assert all(np.allclose(effects(case, state)["imports_mw"][d], fixed[d], atol=1e-6) for d in case.dsos)
    return _outcome(case, "multilevel", results, prices, started)


def clear(case: MarketCase, model: str, pricing: str = "unpriced", safety: str = "prequalification") -> Outcome:
    """A market model by name; `pricing` "optimal" prices the interfaces at the common market's duals."""
    if model not in MODELS:
        raise ValueError(f"market model must be one of {', '.join(MODELS)} (got {model!r})")
    if pricing not in ("unpriced", "optimal"):
        raise ValueError(f"interface pricing must be 'unpriced' or 'optimal' (got {pricing!r})")
    if model == "common":
        return common(case)
    if model == "disjoint":
        return disjoint(case)
    prices = interface_prices(common(case), case) if pricing == "optimal" else None
    return fragmented(case, prices) if model == "fragmented" else multilevel(case, prices, safety)


# ------------------------------------------------------------------------------------------
# Keeping Layer 2 safe for the distribution grids
# ------------------------------------------------------------------------------------------


def prequalified(case: MarketCase, state: np.ndarray, left: np.ndarray) -> np.ndarray:
    """[bid, period] the portions of the DSOs' unused bids each DSO forwards: the largest total
    such that no combination of forwarded portions breaks a voltage limit in the market's
    model: for every row, the sum of the portions that push it up stays within its headroom
    above, and likewise below. Block and partial bids go whole or not at all."""
    out = np.zeros_like(left)
    now = effects(case, state)
    for d, g in case.dsos.items():
        members = [k for k, b in enumerate(case.bids) if b.so == d and left[k].max(initial=0.0) > 0]
        if not members:
            continue
        T = case.periods
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        cols = {}
        for k in members:
            for t in range(T):
                cols[k, t] = len(cols)
                h.addVar(0.0, float(left[k, t]))
        n = len(cols)
        h.changeColsCost(n, np.arange(n, dtype=np.int32), -np.ones(n))  # forward as much as is safe
        blocks = {}
        for k in members:
            if case.bids[k].integer:
                blocks[k] = n + len(blocks)
                h.addVar(0.0, 1.0)
                h.changeColIntegrality(blocks[k], highspy.HighsVarType.kInteger)
                for t in range(T):  # all of it, or none
                    h.addRow(0.0, 0.0, 2, np.array([cols[k, t], blocks[k]], dtype=np.int32), np.array([1.0, -left[k, t]]))
        w = now["w"][d]
        for i in range(len(g.rows)):
            for t in range(T):
                sens = np.array([g.w_sens[i, case.bids[k].node] * case.bids[k].direction for k in members])
                idx = np.array([cols[k, t] for k in members], dtype=np.int32)
                up, down = sens > 0, sens < 0
                if up.any():
                    h.addRow(-highspy.kHighsInf, max(g.v_max ** 2 - w[i, t], 0.0), int(up.sum()), idx[up], sens[up])
                if down.any():
                    h.addRow(-highspy.kHighsInf, max(w[i, t] - g.v_min ** 2, 0.0), int(down.sum()), idx[down], -sens[down])
        h.run()
        x = np.asarray(h.getSolution().col_value)
        for (k, t), c in cols.items():
            out[k, t] = max(0.0, min(x[c], left[k, t]))
    return out


def residual_supply(case: MarketCase, d: str, state: np.ndarray, left: np.ndarray, step_mw: float,
                    steps: int) -> tuple[np.ndarray, np.ndarray]:
    """DSO `d`'s residual supply function: its cost [2*steps+1, period] of moving its import by
    each of -steps..steps x step_mw (MW, all copies) from `state`, from its own problem with
    what is left of its bids under its limits, and whether each point keeps its grid within
    the limits the state already kept (`ok`). Its cost counts only its bids (no penalty)."""
    T = case.periods
    costs = np.full((2 * steps + 1, T), np.nan)
    ok = np.zeros((2 * steps + 1, T), bool)
    base_violation = _row_violations(case, d, state)
    # One model; each step only moves its head rows' targets (a warm re-solve).
    model = LayerModel(case, Layer(f"rsf {d}", d, _of(case, d), left, {d}), state)
    rows = np.array([model.head_rows[d, t] for t in range(T)], dtype=np.int32)
    for j, s in enumerate(range(-steps, steps + 1)):
        target = np.full(T, s * step_mw)
        model.highs.changeRowsBounds(T, rows, target, target)
        r = model.solve()
        if not r.optimal:
            continue
        per_period = np.array([[b.price[t] * case.hours[t] * case.dsos[d].multiplier for t in range(T)]
                               if b.so == d else np.zeros(T) for b in case.bids])
        costs[j] = (per_period * r.cleared_mw).sum(axis=0)
        ok[j] = _row_violations(case, d, state + r.cleared_mw) <= base_violation + 1e-9
        # The point is reachable only if the bids make the whole step (no slack on the head row).
        made = effects(case, r.cleared_mw)["imports_mw"][d]
        ok[j] &= np.isclose(made, target, atol=1e-6)
    return costs, ok


def _row_violations(case: MarketCase, d: str, state: np.ndarray) -> np.ndarray:
    g = case.dsos[d]
    w = effects(case, state)["w"][d]
    return (np.maximum(w - g.v_max ** 2, 0.0) + np.maximum(g.v_min ** 2 - w, 0.0)).sum(axis=0)


RSF_STEPS = 10


def _rsf(case: MarketCase, state: np.ndarray, left: np.ndarray) -> list[LayerResult]:
    """Layer 2 on residual supply functions, then each DSO's delivery (module docstring)."""
    T = case.periods
    segments: list[Bid] = []
    for d, g in case.dsos.items():
        members = [k for k, b in enumerate(case.bids) if b.so == d]
        reach = g.multiplier * np.abs(g.head_sens[[case.bids[k].node for k in members]]) @ left[members] if members else np.zeros(T)
        step = float(reach.max(initial=0.0)) / RSF_STEPS
        if step <= 1e-9:
            continue
        costs, ok = residual_supply(case, d, state, left, step, RSF_STEPS)
        for t in range(T):
            for j in range(2 * RSF_STEPS):
                lo, hi = j, j + 1  # the segment from step lo to step hi (import -steps.. +steps)
                if not (ok[lo, t] and ok[hi, t]):
                    continue
                marginal = (costs[hi, t] - costs[lo, t]) / (step * case.hours[t])
                # Import up by a step (the TSO sees a load: injection down) or down (injection up).
                importing = hi > RSF_STEPS
                q = np.zeros(T)
                q[t] = step
                segments.append(Bid(f"rsf {d} t{t} s{j}", TSO, case.tso.boundary[d], DOWN if importing else UP, q,
                                    np.full(T, marginal if importing else -marginal), fsp=d, kind="rsf"))
    augmented = replace(case, bids=[*case.bids, *segments])
    n = len(case.bids)
    allowed = np.zeros(len(augmented.bids), bool)
    allowed[[k for k, b in enumerate(augmented.bids) if b.so == TSO]] = True
    quantity = np.vstack([left, np.array([b.quantity_mw for b in segments]).reshape(len(segments), T)])
    full_state = np.vstack([state, np.zeros((len(segments), T))])
    second = LayerModel(augmented, Layer("L2 tso (rsf)", TSO, allowed, quantity, {TSO}), full_state).solve()
    # Each DSO delivers the import change the TSO cleared from its segments.
    results = []
    for d in case.dsos:
        mine = [n + j for j, b in enumerate(segments) if b.fsp == d]
        change = np.zeros(T)
        for k in mine:
            change -= augmented.bids[k].direction * second.cleared_mw[k]
        layer = Layer(f"L2 {d} delivers", d, _of(case, d), left, {d}, target_mw={d: change})
        results.append(LayerModel(case, layer, state).solve())
        state = state + results[-1].cleared_mw
        left = left - results[-1].cleared_mw
    # The TSO's own bids of Layer 2, on the case's bids (segments are payments to DSOs, not bids).
    tso_part = replace(second, name="L2 tso", cleared_mw=second.cleared_mw[:n],
                       procurement=float(sum(case.bids[k].price @ (second.cleared_mw[k] * case.hours)
                                             for k in range(n) if case.bids[k].so == TSO)))
    return [tso_part, *results]


def _fixed_duals(case: MarketCase, layer: Layer, result: LayerResult):
    """Duals of a MIP layer's LP with its block / partial / exclusive bids fixed at their values."""
    cleared = result.cleared_mw
    fixed = np.array([b.integer for b in case.bids]) & layer.allowed
    quantity = np.where(fixed[:, None], 0.0, layer.quantity_mw)
    relaxed = replace(case, bids=[replace(b, format="divisible", group=None) for b in case.bids])
    state = np.where(fixed[:, None], cleared, 0.0)
    lp = LayerModel(relaxed, replace(layer, quantity_mw=quantity), state).solve()
    return lp.head_duals, lp.balance_duals
