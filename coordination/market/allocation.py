"""Splitting the cost of a common (cooperative) flexibility market between system operators.

The TSO and the DSOs clear one market together; its cost v(N) must be split between them.
A coalition S of operators has a cost v(S): what S would pay clearing a market of its own
(its own needs, the bids in its own grids). `cost` is that characteristic function, a
callable so the clearing code can back it with one persistent LP whose bounds change per
coalition; every function here asks for each coalition once (`CachedCost`).

Three allocations:

* `shapley_exact` / `shapley_sampled`  each operator pays its average marginal cost over
  the orders in which the coalition could have formed;
* `proportional`  shares of v(N) proportional to the stand-alone costs v({i});
* `lagrangian`  each operator pays the bids activated in its grid plus the power bought
  over its interfaces at the interface prices (the duals of the common market).

`core_violations` says whether an allocation is in the Core: no coalition pays more than
it would alone, and the shares add up to v(N). `allocate` runs all three with their checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Coalition = frozenset[str]
MAX_EXACT = 16  # 2^16 - 1 coalition LPs is the most one should ask for


class CachedCost:
    """A characteristic function that evaluates each coalition once (each call may be an LP solve)."""

    def __init__(self, cost: Callable[[Coalition], float]):
        self.cost = cost
        self.values: dict[Coalition, float] = {}

    def __call__(self, coalition: Coalition) -> float:
        coalition = frozenset(coalition)
        if not coalition:
            return 0.0  # by definition; the clearing code need not handle an empty market
        if coalition not in self.values:
            value = float(self.cost(coalition))
            if not math.isfinite(value):  # e.g. an infeasible coalition market
                raise ValueError(f"cost of coalition {sorted(coalition)} is {value}, not a finite number")
            self.values[coalition] = value
        return self.values[coalition]


def _cached(cost: Callable[[Coalition], float]) -> CachedCost:
    # allocate() shares one cache between the methods, so do not wrap a cache again
    return cost if isinstance(cost, CachedCost) else CachedCost(cost)


def _check_players(players: Sequence[str], limit: int | None = None) -> list[str]:
    if isinstance(players, str):
        raise ValueError(f"players must be a sequence of names, not the string {players!r}")
    players = list(players)
    if not players:
        raise ValueError("no players: a cost allocation needs at least one system operator")
    duplicates = sorted({p for p in players if players.count(p) > 1})
    if duplicates:
        raise ValueError(f"duplicate player names: {duplicates}")
    if limit is not None and len(players) > limit:
        raise ValueError(f"n = {len(players)} players is too many for enumerating all 2^n - 1 coalitions (at most {limit})")
    return players


def _coalition(players: Sequence[str], mask: int) -> Coalition:
    """The players whose bits are set in `mask` (bit k is players[k])."""
    return frozenset(p for k, p in enumerate(players) if mask >> k & 1)


def shapley_exact(players: Sequence[str], cost: Callable[[Coalition], float]) -> dict[str, float]:
    """Shapley value by enumerating all 2^n - 1 coalitions (n <= 16)."""
    players = _check_players(players, MAX_EXACT)
    cost = _cached(cost)
    n = len(players)
    masks = np.arange(1 << n)
    values = np.array([cost(_coalition(players, int(m))) for m in masks])  # values[0] = v(empty) = 0
    sizes = np.array([bin(int(m)).count("1") for m in masks])
    # weight of a coalition S of size s not containing i: s! (n - s - 1)! / n!
    weights = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    shares = {}
    for k, player in enumerate(players):
        bit = 1 << k
        without = masks[(masks & bit) == 0]
        shares[player] = float(np.sum(weights[sizes[without]] * (values[without | bit] - values[without])))
    return shares


def shapley_sampled(players: Sequence[str], cost: Callable[[Coalition], float], samples: int,
                    seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Shapley value estimated from `samples` random orders: (estimate, standard error) per player.

    Each order's marginal costs add up to v(N), so the estimates do too (to rounding)."""
    players = _check_players(players)
    if samples < 2:
        raise ValueError(f"samples = {samples}: at least 2 random orders are needed for a standard error")
    cost = _cached(cost)
    n = len(players)
    rng = np.random.default_rng(seed)
    marginals = np.zeros((samples, n))
    for row in range(samples):
        coalition: Coalition = frozenset()
        before = 0.0
        for k in rng.permutation(n):
            coalition = coalition | {players[k]}
            after = cost(coalition)
            marginals[row, k] = after - before
            before = after
    estimate = marginals.mean(axis=0)
    error = marginals.std(axis=0, ddof=1) / math.sqrt(samples)
    return ({p: float(estimate[k]) for k, p in enumerate(players)},
            {p: float(error[k]) for k, p in enumerate(players)})


def proportional(stand_alone: Mapping[str, float], total: float) -> dict[str, float]:
    """Shares of `total` proportional to each operator's stand-alone cost v({i}); equal if all are 0."""
    _check_players(list(stand_alone))
    negative = sorted(p for p, c in stand_alone.items() if c < 0)
    if negative:
        # with mixed signs the proportions are meaningless (and the sum may be 0)
        raise ValueError(f"negative stand-alone costs for {negative}: proportional shares need costs >= 0")
    whole = sum(stand_alone.values())
    if whole == 0:
        return {p: total / len(stand_alone) for p in stand_alone}
    return {p: total * c / whole for p, c in stand_alone.items()}


def lagrangian(own_cost: Mapping[str, float], interface_payment: Mapping[str, float]) -> dict[str, float]:
    """Dual-based shares: each operator pays the bids activated in its grid plus its interface payments.

    `interface_payment[i]` is what operator i pays for the power over its interfaces at the
    interface prices (negative when it is paid). The payments are transfers between the
    operators, so they must add up to 0; the shares then add up to the total bid cost."""
    _check_players(list(own_cost))
    if set(own_cost) != set(interface_payment):
        raise ValueError(f"own costs are for {sorted(own_cost)} but interface payments for {sorted(interface_payment)}")
    imbalance = sum(interface_payment.values())
    scale = sum(abs(p) for p in interface_payment.values())
    if abs(imbalance) > 1e-6 * (1 + scale):
        raise ValueError(f"interface payments add up to {imbalance:.6g}, not 0 (of {scale:.6g} paid in total): they are not transfers")
    return {p: own_cost[p] + interface_payment[p] for p in own_cost}


def core_violations(shares: Mapping[str, float], cost: Callable[[Coalition], float], players: Sequence[str],
                    tol: float = 1e-6) -> list[tuple[Coalition, float]]:
    """Coalitions whose shares add up to more than they would pay alone, as (S, excess), largest first.

    The grand coalition N is also listed when the shares miss v(N) either way (efficiency;
    its excess is then negative if they fall short). An empty list means the shares are in the Core."""
    players = _check_players(players, MAX_EXACT)
    if set(shares) != set(players):
        raise ValueError(f"shares are for {sorted(shares)} but the players are {sorted(players)}")
    cost = _cached(cost)
    grand = (1 << len(players)) - 1
    found = []
    for mask in range(1, grand + 1):
        coalition = _coalition(players, mask)
        value = cost(coalition)
        excess = sum(shares[p] for p in coalition) - value
        limit = tol * (1 + abs(value))
        if excess > limit or (mask == grand and excess < -limit):
            found.append((coalition, excess))
    found.sort(key=lambda item: item[1], reverse=True)
    return found


@dataclass
class Allocation:
    """One method's split of the market cost and its Core check."""

    method: str  # "shapley", "proportional" or "lagrangian"
    shares: dict[str, float]
    in_core: bool | None  # None: not checked (too many players to enumerate the coalitions)
    violations: list[tuple[Coalition, float]] = field(default_factory=list)
    note: str = ""


def allocate(players: Sequence[str], cost: Callable[[Coalition], float], own_cost: Mapping[str, float],
             interface_payment: Mapping[str, float], samples: int = 2000, seed: int = 0,
             exact_up_to: int = 10) -> dict[str, Allocation]:
    """Shapley (exact up to `exact_up_to` players, sampled beyond), proportional and Lagrangian
    shares, keyed by method, each checked against the Core when the coalitions can be enumerated."""
    players = _check_players(players)
    if set(own_cost) != set(players):
        raise ValueError(f"own costs are for {sorted(own_cost)} but the players are {sorted(players)}")
    cost = _cached(cost)  # one cache for all methods: each coalition market is cleared once
    n = len(players)
    grand = cost(frozenset(players))
    notes = {}
    if n <= exact_up_to:
        shapley = shapley_exact(players, cost)
        notes["shapley"] = "exact"
    else:
        shapley, error = shapley_sampled(players, cost, samples, seed)
        notes["shapley"] = (f"sampled: {samples} random orders, seed {seed}; standard errors "
                            + ", ".join(f"{p}: {e:.6g}" for p, e in error.items()))
    methods = {
        "shapley": shapley,
        "proportional": proportional({p: cost(frozenset([p])) for p in players}, grand),
        "lagrangian": lagrangian(own_cost, interface_payment),
    }
    out = {}
    for method, shares in methods.items():
        note = notes.get(method, "")
        if n <= exact_up_to:
            violations = core_violations(shares, cost, players)
            out[method] = Allocation(method, shares, not violations, violations, note)
        else:
            # efficiency costs nothing to check; the other 2^n - 2 coalitions are not enumerated
            gap = sum(shares.values()) - grand
            check = f"Core not checked (n = {n} > exact_up_to = {exact_up_to}); sum of shares - v(N) = {gap:.6g}"
            out[method] = Allocation(method, shares, None, [], f"{note}; {check}" if note else check)
    return out
