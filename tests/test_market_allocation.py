"""Cost allocation of a common flexibility market between system operators (coordination/market/allocation.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from coordination.market.allocation import (
    Allocation,
    CachedCost,
    allocate,
    core_violations,
    lagrangian,
    proportional,
    shapley_exact,
    shapley_sampled,
)

# A hand-computed 3-operator cost game (EUR): each alone, each pair, all three.
HAND = {
    frozenset(["TSO"]): 6.0, frozenset(["DSO1"]): 8.0, frozenset(["DSO2"]): 10.0,
    frozenset(["TSO", "DSO1"]): 12.0, frozenset(["TSO", "DSO2"]): 13.0, frozenset(["DSO1", "DSO2"]): 14.0,
    frozenset(["TSO", "DSO1", "DSO2"]): 18.0,
}
# Marginal costs over the 6 orders (first: 2 orders; after one other: 1 order each; last: 2 orders):
#   TSO : 6, 6 | 12-8=4 | 13-10=3 | 18-14=4, 4   -> 27/6 = 4.5
#   DSO1: 8, 8 | 12-6=6 | 14-10=4 | 18-13=5, 5   -> 36/6 = 6.0
#   DSO2: 10,10| 13-6=7 | 14-8=6  | 18-12=6, 6   -> 45/6 = 7.5      (4.5 + 6 + 7.5 = 18 = v(N))
HAND_SHAPLEY = {"TSO": 4.5, "DSO1": 6.0, "DSO2": 7.5}


def brute_shapley(players, v):
    """The textbook formula: phi_i = sum over S not containing i of |S|!(n-|S|-1)!/n! (v(S+i) - v(S))."""
    n = len(players)
    out = {}
    for i in players:
        others = [p for p in players if p != i]
        total = 0.0
        for size in range(n):
            for s in itertools.combinations(others, size):
                s = frozenset(s)
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                total += weight * (v(s | {i}) - v(s))
        out[i] = total
    return out


def random_game(players, seed):
    """An arbitrary cost game (not monotone, not subadditive): one random number per coalition."""
    rng = np.random.default_rng(seed)
    table = {frozenset(s): float(rng.uniform(0, 10)) for r in range(1, len(players) + 1)
             for s in itertools.combinations(players, r)}
    return lambda s: table[frozenset(s)] if s else 0.0


def concave_game(weights, fixed):
    """Economies of scale: a fixed cost per operator plus a concave (sqrt) cost of the pooled need.
    A concave function of an additive measure is submodular, so the cost game is convex."""
    return lambda s: sum(fixed[p] for p in s) + 5.0 * math.sqrt(sum(weights[p] for p in s))


class Counting:
    """A cost function that counts how often each coalition is asked for (each call is an LP solve)."""

    def __init__(self, cost):
        self.cost = cost
        self.calls: dict[frozenset, int] = {}

    def __call__(self, s):
        self.calls[s] = self.calls.get(s, 0) + 1
        return self.cost(s)


def merit_order_market(needs, bids):
    """A copper-plate common market: each operator needs upward flexibility (MW) and has bids
    (MW, EUR/MWh) in its grid. A coalition clears its own needs from its own bids in merit order
    (the LP's optimum); returns the cost function and the grand clearing's (own cost, interface
    payment at the clearing price, i.e. the dual of the balance)."""

    def clear(coalition):
        need = sum(needs[p] for p in coalition)
        offers = sorted((price, mw, p) for p in coalition for mw, price in bids[p])
        activated = {p: 0.0 for p in coalition}
        paid = {p: 0.0 for p in coalition}
        price = 0.0
        for price, mw, p in offers:
            take = min(mw, need)
            activated[p] += take
            paid[p] += take * price
            need -= take
            if need <= 0:
                break
        assert need <= 1e-12, "each coalition can cover its own needs"
        return sum(paid.values()), activated, paid, price

    def cost(coalition):
        return clear(coalition)[0]

    _, activated, paid, price = clear(frozenset(needs))
    own = dict(paid)
    payment = {p: price * (needs[p] - activated[p]) for p in needs}  # imports pay, exports are paid
    return cost, own, payment


NEEDS = {"TSO": 30.0, "DSO1": 12.0, "DSO2": 8.0, "DSO3": 5.0}
BIDS = {  # (MW, EUR/MWh): DSO flexibility is cheap, the TSO's own reserve dear
    "TSO": [(20.0, 60.0), (25.0, 90.0)],
    "DSO1": [(10.0, 20.0), (15.0, 45.0)],
    "DSO2": [(6.0, 25.0), (10.0, 70.0)],
    "DSO3": [(9.0, 35.0), (4.0, 80.0)],
}


def test_hand_computed_three_operator_game():
    v = lambda s: HAND[s]
    assert shapley_exact(["TSO", "DSO1", "DSO2"], v) == pytest.approx(HAND_SHAPLEY, abs=1e-12)
    # the order the players are listed in is no part of the game
    assert shapley_exact(["DSO2", "TSO", "DSO1"], v) == pytest.approx(HAND_SHAPLEY, abs=1e-12)


def test_efficiency_symmetry_and_dummy():
    players = ["TSO", "DSO1", "DSO2", "DSO3", "DSO4"]
    weights = {"TSO": 9.0, "DSO1": 2.0, "DSO2": 2.0, "DSO3": 5.0, "DSO4": 1.0}
    fixed = {"TSO": 3.0, "DSO1": 1.5, "DSO2": 1.5, "DSO3": 0.5, "DSO4": 0.0}
    base = concave_game(weights, fixed)
    # DSO4 gains nothing from pooling: it adds exactly its stand-alone cost 7 to every coalition
    v = lambda s: base(s - {"DSO4"}) + (7.0 if "DSO4" in s else 0.0)
    shares = shapley_exact(players, v)
    assert sum(shares.values()) == pytest.approx(v(frozenset(players)), rel=1e-12)
    assert shares["DSO1"] == pytest.approx(shares["DSO2"], rel=1e-12)  # same need, same fixed cost
    assert shares["DSO1"] != pytest.approx(shares["DSO3"], rel=1e-3)
    assert shares["DSO4"] == pytest.approx(7.0, rel=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exact_equals_formula_and_sampled_within_four_standard_errors(seed):
    players = ["TSO", "DSO1", "DSO2", "DSO3", "DSO4"]
    v = random_game(players, seed)
    exact = shapley_exact(players, v)
    assert exact == pytest.approx(brute_shapley(players, v), abs=1e-10)
    estimate, error = shapley_sampled(players, v, samples=2000, seed=seed)
    assert sum(estimate.values()) == pytest.approx(v(frozenset(players)), rel=1e-12)  # each order telescopes to v(N)
    for p in players:
        assert 0 < error[p] < 1.0
        assert abs(estimate[p] - exact[p]) <= 4 * error[p], (p, estimate[p], exact[p], error[p])


def test_sampled_estimates_add_up_with_few_samples():
    players = ["TSO", "DSO1", "DSO2", "DSO3", "DSO4", "DSO5"]
    v = random_game(players, 7)
    estimate, _ = shapley_sampled(players, v, samples=3, seed=0)
    assert sum(estimate.values()) == pytest.approx(v(frozenset(players)), rel=1e-12)


def is_submodular(players, v):
    """v(S+i) - v(S) >= v(T+i) - v(T) for all S subset of T, i not in T (decreasing marginal cost)."""
    subsets = [frozenset(s) for r in range(len(players) + 1) for s in itertools.combinations(players, r)]
    return all(v(s | {i}) - v(s) >= v(t | {i}) - v(t) - 1e-12
               for t in subsets for s in subsets if s <= t for i in players if i not in t)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shapley_of_a_convex_cost_game_is_in_the_core(seed):
    rng = np.random.default_rng(seed)
    players = ["TSO", "DSO1", "DSO2", "DSO3", "DSO4"]
    v = concave_game({p: float(rng.uniform(1, 20)) for p in players}, {p: float(rng.uniform(0, 5)) for p in players})
    assert is_submodular(players, v)  # the premise of the theorem
    shares = shapley_exact(players, v)
    assert core_violations(shares, v, players) == []
    # the check itself bites: shift 0.5 from one operator to another and someone pays more than alone
    # (the TSO's stand-alone cost is at least its Shapley share; push it above)
    stand_alone = v(frozenset(["TSO"]))
    shifted = dict(shares, TSO=stand_alone + 0.5, DSO1=shares["DSO1"] - (stand_alone + 0.5 - shares["TSO"]))
    assert (frozenset(["TSO"]), pytest.approx(0.5)) in core_violations(shifted, v, players)


def test_empty_core_is_reported_for_every_allocation():
    players = ["a", "b", "c"]
    table = {1: 1.0, 2: 1.0, 3: 1.6}  # v(i) = 1, v(ij) = 1, v(abc) = 1.6: pairs get x_i + x_j <= 1, so sum <= 1.5 < 1.6
    v = lambda s: table[len(s)]
    shares = shapley_exact(players, v)
    assert shares == pytest.approx({p: 1.6 / 3 for p in players})
    violations = core_violations(shares, v, players)
    # each pair pays 3.2/3 against 1 alone: excess 0.2/3 = 1/15; singletons (0.533 < 1) and N (efficient) are fine
    assert {s for s, _ in violations} == {frozenset(pair) for pair in itertools.combinations(players, 2)}
    assert [e for _, e in violations] == pytest.approx([1 / 15] * 3)
    rng = np.random.default_rng(0)
    for x in rng.dirichlet([1, 1, 1], size=200) * 1.6:  # efficient allocations: some pair pays >= 2/3 * 1.6 > 1
        assert core_violations(dict(zip(players, x)), v, players)
    # pairs satisfied (0.5 + 0.5 = 1) but the market's cost not covered: only efficiency fails, short by 0.1
    assert core_violations({p: 0.5 for p in players}, v, players) == [(frozenset(players), pytest.approx(-0.1))]


def test_lagrangian_of_a_merit_order_market_is_in_the_core():
    """Owen (1975): in a linear production game the dual-price allocation is in the Core. Paying
    own activated bids plus imports at the clearing price is that allocation."""
    cost, own, payment = merit_order_market(NEEDS, BIDS)
    players = list(NEEDS)
    shares = lagrangian(own, payment)
    assert sum(shares.values()) == pytest.approx(sum(own.values()), rel=1e-12)
    assert sum(shares.values()) == pytest.approx(cost(frozenset(players)), rel=1e-12)
    assert core_violations(shares, cost, players) == []
    # pooling pays: every operator pays less than alone, the TSO (the dear reserve) most of all
    assert all(shares[p] < cost(frozenset([p])) for p in players)


def test_lagrangian_refuses_unbalanced_payments():
    own = {"TSO": 100.0, "DSO1": 40.0}
    assert lagrangian(own, {"TSO": 25.0, "DSO1": -25.0}) == {"TSO": 125.0, "DSO1": 15.0}
    with pytest.raises(ValueError, match="add up to 0.5"):
        lagrangian(own, {"TSO": 25.0, "DSO1": -24.5})
    with pytest.raises(ValueError, match="interface payments"):
        lagrangian(own, {"TSO": 25.0, "DSO2": -25.0})


def test_proportional():
    assert proportional({"TSO": 30.0, "DSO1": 10.0}, 20.0) == pytest.approx({"TSO": 15.0, "DSO1": 5.0})
    assert proportional({"TSO": 0.0, "DSO1": 0.0}, 8.0) == {"TSO": 4.0, "DSO1": 4.0}
    with pytest.raises(ValueError, match="negative stand-alone"):
        proportional({"TSO": 3.0, "DSO1": -1.0}, 2.0)


def test_each_coalition_is_evaluated_once():
    players = ["TSO", "DSO1", "DSO2", "DSO3", "DSO4"]
    counting = Counting(random_game(players, 4))
    shapley_exact(players, counting)
    assert len(counting.calls) == 2 ** 5 - 1 and set(counting.calls.values()) == {1}
    assert frozenset() not in counting.calls  # v(empty) = 0 by definition
    counting = Counting(random_game(players, 4))
    shapley_sampled(players, counting, samples=500, seed=0)
    assert set(counting.calls.values()) == {1}
    # allocate: Shapley, stand-alone costs, v(N) and three Core checks share one cache
    cost, own, payment = merit_order_market(NEEDS, BIDS)
    counting = Counting(cost)
    allocate(list(NEEDS), counting, own, payment)
    assert len(counting.calls) == 2 ** 4 - 1 and set(counting.calls.values()) == {1}


def test_allocate_small_market():
    cost, own, payment = merit_order_market(NEEDS, BIDS)
    result = allocate(list(NEEDS), cost, own, payment)
    assert set(result) == {"shapley", "proportional", "lagrangian"}
    grand = cost(frozenset(NEEDS))
    for method, a in result.items():
        assert isinstance(a, Allocation) and a.method == method
        assert sum(a.shares.values()) == pytest.approx(grand, rel=1e-9)
        assert a.in_core == (not a.violations)
    assert result["lagrangian"].in_core is True
    assert result["shapley"].note == "exact"
    assert result["shapley"].shares == pytest.approx(shapley_exact(list(NEEDS), cost))


def test_allocate_many_operators_samples_and_does_not_check_the_core():
    players = ["TSO"] + [f"DSO{k}" for k in range(1, 12)]
    weights = {p: 1.0 + k for k, p in enumerate(players)}
    v = concave_game(weights, {p: 1.0 for p in players})
    counting = Counting(v)
    own = {p: v(frozenset([p])) for p in players}
    result = allocate(players, counting, own, {p: 0.0 for p in players}, samples=200, seed=3, exact_up_to=10)
    shapley = result["shapley"]
    assert shapley.in_core is None and "sampled" in shapley.note and "not checked" in shapley.note
    assert "standard errors" in shapley.note
    assert sum(shapley.shares.values()) == pytest.approx(v(frozenset(players)), rel=1e-12)
    assert all(a.in_core is None and "not checked" in a.note for a in result.values())
    assert len(counting.calls) < 2 ** 12 - 1 and set(counting.calls.values()) == {1}  # no enumeration


@pytest.mark.parametrize("call, match", [
    (lambda: shapley_exact([f"DSO{k}" for k in range(17)], lambda s: 1.0), "n = 17"),
    (lambda: shapley_exact([], lambda s: 1.0), "no players"),
    (lambda: shapley_sampled([], lambda s: 1.0, samples=10, seed=0), "no players"),
    (lambda: shapley_exact(["TSO", "DSO1", "TSO"], lambda s: 1.0), r"duplicate player names: \['TSO'\]"),
    (lambda: core_violations({"TSO": 1.0}, lambda s: 1.0, ["TSO", "TSO"]), "duplicate"),
    (lambda: shapley_exact("TSO", lambda s: 1.0), "not the string"),
    (lambda: shapley_sampled(["TSO"], lambda s: 1.0, samples=1, seed=0), "samples = 1"),
    (lambda: shapley_exact(["TSO", "DSO1"], lambda s: math.inf), "not a finite number"),
    (lambda: core_violations({"TSO": 1.0}, lambda s: 1.0, ["TSO", "DSO1"]), "shares are for"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_cached_cost_returns_zero_for_the_empty_coalition_without_asking():
    counting = Counting(lambda s: 1.0)
    cached = CachedCost(counting)
    assert cached(frozenset()) == 0.0 and counting.calls == {}
