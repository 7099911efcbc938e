"""The flexibility market models (coordination.market) on a small T&D case whose grids both
have needs: a 3-bus transmission triangle with one congested line, and two IEEE 13 feeders
(their LinDist3Flow map from the real model) with PV pushing node voltages over the limit.
Economics that must hold: the common market is the cheapest safe one; at the common
market's interface prices the sequential models reach its cost; unpriced they do not;
grid-safe forwarding leaves no violation; bid formats hold (checked against brute force);
the coalition costs are those of the sub-markets, and their Shapley split is efficient."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from coordination.market import clearing as mc
from coordination.market.allocation import allocate, core_violations
from coordination.market.bids import DOWN, UP, aggregate, bid, with_markups
from coordination.market.case import TSO, MarketCase, distribution_grid, effects, transmission_grid, violations
from coordination.network_data import Branch, TransmissionData

T = 2  # periods: much PV then less
RTOL = 1e-6


def _feeder(data, pv_kw_per_phase: tuple[float, float]):
    """IEEE 13 with its loads and PV at 675 (kW per phase per period); bids may inject at
    675 (PV), 671 (battery), 634 (flexible load) and 632 (a genset near the head)."""
    from coordination.feeder_response import feeder_response

    r = feeder_response(data)
    index = {n: i for i, n in enumerate(r.nodes)}
    p_net, q_net = np.zeros((len(r.nodes), T)), np.zeros((len(r.nodes), T))
    nodes, p, q = data.load_matrix()
    for i, n in enumerate(nodes):
        p_net[index[n]] -= p[i].sum()
        q_net[index[n]] -= q[i].sum()
    for ph in (1, 2, 3):
        p_net[index[("675", ph)]] += pv_kw_per_phase
    # v_max above what the regulator's output node holds at its taps (no bid moves that one)
    return distribution_grid(data, ["675", "671", "634", "632"], p_net, q_net, np.ones(T), v_min=0.9, v_max=1.057)


def _bids():
    return [
        bid("g0 down", TSO, 0, DOWN, 30, 5, T), bid("g1 up", TSO, 1, UP, 30, 40, T), bid("g2 up", TSO, 2, UP, 30, 30, T),
        bid("d1 pv", "d1", 0, DOWN, 1.5, 8, T), bid("d1 bat up", "d1", 1, UP, 1.0, 15, T),
        bid("d1 bat down", "d1", 1, DOWN, 1.0, 15, T), bid("d1 fl up", "d1", 2, UP, 0.5, 20, T),
        bid("d1 dg up", "d1", 3, UP, 1.0, 25, T),
        bid("d2 pv", "d2", 0, DOWN, 1.5, 9, T), bid("d2 bat up", "d2", 1, UP, 1.0, 16, T),
        bid("d2 bat down", "d2", 1, DOWN, 1.0, 16, T), bid("d2 dg up", "d2", 3, UP, 1.0, 26, T),
    ]


@pytest.fixture(scope="module")
def case(ieee13) -> MarketCase:
    # Line 0-1 rated 40 MW carries 46.7 MW at the baseline (generation at bus 0, load at 1 and 2).
    tn = TransmissionData(100.0, [0, 1, 2], 0, [Branch("l01", 0, 1, 0.1, rating_mw=40.0), Branch("l02", 0, 2, 0.1),
                                                Branch("l12", 1, 2, 0.1)], [], [])
    injection = np.array([[90.0] * T, [-50.0] * T, [-40.0] * T])
    dsos = {"d1": _feeder(ieee13, (900.0, 300.0)), "d2": _feeder(ieee13, (900.0, 300.0))}
    return MarketCase(transmission_grid(tn, injection, {"d1": 1, "d2": 2}), dsos, _bids(), np.ones(T))


def test_the_case_has_needs_in_every_grid(case):
    base = violations(case, np.zeros((len(case.bids), T)))
    assert base[TSO] > 1.0 and base["d1"] > 0 and base["d2"] > 0, base


def test_common_market_is_the_cheapest_of_the_safe_models(case):
    common = mc.common(case)
    assert common.optimal and common.penalty == pytest.approx(0.0, abs=1e-6)
    assert all(v == 0.0 for v in common.violations.values()), common.violations
    others = [mc.disjoint(case), mc.fragmented(case)] + [mc.multilevel(case, None, s) for s in mc.SAFETY]
    for o in others:
        safe = all(v == 0.0 for v in o.violations.values())
        assert o.cost >= common.cost * (1 - RTOL) or not safe, (o.model, o.cost, common.cost)
    # Forwarding without any distribution limit is cheaper here, and that is why: it breaks them.
    unsafe = mc.multilevel(case, None, "none")
    assert unsafe.cost < common.cost and (unsafe.violations["d1"] > 0 or unsafe.violations["d2"] > 0)


def test_disjoint_markets_leave_every_interface_at_its_baseline(case):
    out = mc.disjoint(case)
    for d in case.dsos:
        np.testing.assert_allclose(out.imports_mw[d], 0.0, atol=1e-7)
    assert out.violations[TSO] == 0.0 and out.violations["imbalance_mwh"] == 0.0


@pytest.mark.parametrize("model,safety", [("fragmented", None), ("multilevel", "prequalification"), ("multilevel", "rsf")])
def test_at_the_common_markets_interface_prices_sequential_markets_reach_its_cost(case, model, safety):
    common = mc.common(case)
    prices = mc.interface_prices(common, case)
    out = mc.fragmented(case, prices) if model == "fragmented" else mc.multilevel(case, prices, safety)
    assert out.cost == pytest.approx(common.cost, rel=RTOL)
    assert all(v == 0.0 for v in out.violations.values()), out.violations
    unpriced = mc.fragmented(case) if model == "fragmented" else mc.multilevel(case, None, safety)
    assert unpriced.cost > common.cost * (1 + 1e-4)


def test_interface_price_is_a_subgradient_of_the_common_markets_cost(case):
    """The dual of a head row against finite differences: the common market with one DSO
    drawing 0.01 MW more or less in period 0 than its bids make (a load of its own, which the
    transmission must then serve). The cost is convex in it and the price lies between the
    left and right slopes (equal where the cost is smooth)."""
    common = mc.common(case)
    eps = 0.01
    for d in case.dsos:
        price = mc.interface_prices(common, case)[d][0]
        layer = mc.Layer("common", "common", np.ones(len(case.bids), bool), mc._all(case), set(case.sos), set(case.dsos))
        model = mc.LayerModel(case, layer)
        slopes = []
        for sign in (-1, 1):
            model.highs.changeRowBounds(model.head_rows[d, 0], sign * eps, sign * eps)
            model.highs.run()
            slopes.append(sign * (model.objective() - common.cost) / eps)
        assert slopes[0] - 1e-6 <= price <= slopes[1] + 1e-6, (d, slopes, price)


def test_unpriced_dsos_procure_downward_flexibility_the_tso_then_corrects(case):
    """Fragmented, unpriced: the DSOs curtail PV (downward, cheap locally), which raises their
    imports; the TSO buys upward flexibility to rebalance. The common market instead lets
    each DSO export (its genset and battery near the head) and relieves the congested line."""
    frag = mc.fragmented(case)
    common = mc.common(case)
    names = [b.name for b in case.bids]
    l1 = sum(r.cleared_mw for r in frag.layers if r.procurer != TSO)
    down = sum(l1[names.index(n)].sum() for n in ("d1 pv", "d2 pv", "d1 bat down", "d2 bat down"))
    assert down > 0.5 and (frag.imports_mw["d1"] > 0).any()
    assert frag.cost > common.cost * 1.01
    assert common.imports_mw["d1"].sum() < frag.imports_mw["d1"].sum()


def test_grid_safe_forwarding_and_the_corrective_layer(case):
    none = mc.multilevel(case, None, "none")
    for safety in ("prequalification", "rsf"):
        out = mc.multilevel(case, None, safety)
        assert out.violations["d1"] == 0.0 and out.violations["d2"] == 0.0, (safety, out.violations)
    corrective = mc.multilevel(case, None, "corrective")
    # Layer 3 acts at the interface flows Layer 2 left (asserted inside `multilevel`); d2 has
    # what it takes to remove its violation there (its genset near the head against PV).
    assert none.violations["d2"] > 0 and corrective.violations["d2"] == 0.0
    assert corrective.violations["d1"] <= none.violations["d1"] + 1e-12
    assert corrective.cost > none.cost
    for d in case.dsos:
        np.testing.assert_allclose(corrective.imports_mw[d], none.imports_mw[d], atol=1e-6)


@pytest.mark.parametrize("v_min", [0.9, 0.975])
def test_prequalified_portions_hold_in_every_combination(case, v_min):
    """Brute force over the corners: any subset of the forwarded portions activated together
    keeps every voltage row within its limits in the market's model (v_min 0.975: within
    reach of the downward bids, so rows below bind as well as rows above)."""
    case = replace(case, dsos={d: replace(g, v_min=v_min) for d, g in case.dsos.items()})
    state = sum(r.cleared_mw for r in mc._layer1(case, None))
    left = mc._all(case) - state
    forwarded = mc.prequalified(case, state, left)
    base = violations(case, state)
    assert base["d1"] == 0.0 and base["d2"] == 0.0
    dso_bids = [k for k, b in enumerate(case.bids) if b.so != TSO]
    assert forwarded[dso_bids].sum() > 0
    for subset in itertools.product((0, 1), repeat=len(dso_bids)):
        x = state.copy()
        x[dso_bids] += np.array(subset)[:, None] * forwarded[dso_bids]
        v = violations(case, x)
        assert v["d1"] == 0.0 and v["d2"] == 0.0, subset


def test_residual_supply_function_is_convex_and_priced_at_primal_costs(case):
    state = sum(r.cleared_mw for r in mc._layer1(case, None))
    left = mc._all(case) - state
    costs, ok = mc.residual_supply(case, "d2", state, left, step_mw=0.2, steps=4)
    np.testing.assert_allclose(costs[4], 0.0, atol=1e-9)  # no move, no cost: Layer 1 already met the needs
    for t in range(T):
        c = costs[ok[:, t], t]
        assert len(c) >= 3
        assert np.all(c >= -1e-9)  # every bid has a positive price
        assert np.all(np.diff(c, 2) >= -1e-7), c  # an LP's value in its right-hand side is convex


def test_block_partial_and_exclusive_bids_against_brute_force(case):
    bids = list(case.bids)
    k_dg = [b.name for b in bids].index("d2 dg up")
    k_g2 = [b.name for b in bids].index("g2 up")
    k_bat = [b.name for b in bids].index("d1 bat up")
    k_fl = [b.name for b in bids].index("d1 fl up")
    bids[k_dg] = replace(bids[k_dg], format="indivisible")
    bids[k_g2] = replace(bids[k_g2], format="partial", min_mw=12.0)
    bids[k_bat] = replace(bids[k_bat], group="d1 storage or load")
    bids[k_fl] = replace(bids[k_fl], group="d1 storage or load")
    mixed = replace(case, bids=bids)
    out = mc.common(mixed)
    assert out.optimal
    x = out.cleared_mw
    assert np.allclose(x[k_dg], 0.0, atol=1e-7) or np.allclose(x[k_dg], bids[k_dg].quantity_mw, rtol=1e-7)
    assert all(v < 1e-7 or v >= 12.0 - 1e-7 for v in x[k_g2])
    assert not (x[k_bat].max() > 1e-7 and x[k_fl].max() > 1e-7)
    # Brute force: every on/off choice of the four integer bids as an LP; the MIP is the best.
    best = np.inf
    for dg, g2, bat, fl in itertools.product((0, 1), repeat=4):
        if bat and fl:
            continue
        fixed = list(case.bids)
        fixed[k_dg] = replace(fixed[k_dg], quantity_mw=fixed[k_dg].quantity_mw * dg)
        fixed[k_bat] = replace(fixed[k_bat], quantity_mw=fixed[k_bat].quantity_mw * bat)
        fixed[k_fl] = replace(fixed[k_fl], quantity_mw=fixed[k_fl].quantity_mw * fl)
        fixed[k_g2] = replace(fixed[k_g2], quantity_mw=fixed[k_g2].quantity_mw * g2)
        sub = replace(case, bids=fixed)
        layer = mc.Layer("bf", "common", np.ones(len(fixed), bool), mc._all(sub), set(sub.sos), set(sub.dsos))
        model = mc.LayerModel(sub, layer)
        if dg:  # all or nothing: the block's quantity fixed
            for t in range(T):
                model.highs.changeColBounds(model.x[k_dg, t], fixed[k_dg].quantity_mw[t], fixed[k_dg].quantity_mw[t])
        if g2:
            for t in range(T):
                model.highs.changeColBounds(model.x[k_g2, t], 12.0, fixed[k_g2].quantity_mw[t])
        r = model.solve()
        if r.optimal:
            best = min(best, model.objective())
    assert out.cost + out.penalty == pytest.approx(best, rel=RTOL)
    assert out.cost + out.penalty >= mc.common(case).cost * (1 - RTOL)  # restrictions never help


def test_coalition_costs_are_the_sub_markets_and_their_split_is_efficient(case):
    game = mc.CommonGame(case)
    common, disjoint = mc.common(case), mc.disjoint(case)
    grand = frozenset(case.sos)
    assert game(grand) == pytest.approx(common.cost + common.penalty, rel=RTOL)
    alone = {so: game(frozenset([so])) for so in case.sos}
    assert sum(alone.values()) == pytest.approx(disjoint.cost + disjoint.penalty, rel=RTOL)
    assert game(frozenset(["d1", "d2"])) == pytest.approx(alone["d1"] + alone["d2"], rel=RTOL)  # DSOs meet only through the TSO
    # Subadditive: cooperating never costs more than the parts alone (the union's market holds both).
    for s in range(1, len(case.sos) + 1):
        for coalition in itertools.combinations(case.sos, s):
            for split in range(1, len(coalition)):
                for left in itertools.combinations(coalition, split):
                    right = frozenset(coalition) - frozenset(left)
                    assert game(frozenset(coalition)) <= game(frozenset(left)) + game(right) + 1e-6
    # Re-solved with bounds changed, back to the grand coalition: the same optimum.
    assert game(grand) == pytest.approx(common.cost + common.penalty, rel=RTOL)
    own, payment = mc.lagrangian_inputs(common, case)
    shares = allocate(case.sos, game, own, payment)
    for method, allocation in shares.items():
        assert sum(allocation.shares.values()) == pytest.approx(game(grand), rel=1e-6), method
    shapley = shares["shapley"]
    assert shapley.in_core == (not core_violations(shapley.shares, game, case.sos))
    with pytest.raises(ValueError, match="unknown system operator"):
        game(frozenset(["nobody"]))


def test_bids_are_checked_and_aggregated(case):
    with pytest.raises(ValueError, match="bid 'x': unknown system operator 'dx'"):
        replace(case, bids=[bid("x", "dx", 0, UP, 1.0, 1.0, T)])
    with pytest.raises(ValueError, match="bid 'x': node 9 is not in d1's grid"):
        replace(case, bids=[bid("x", "d1", 9, UP, 1.0, 1.0, T)])
    with pytest.raises(ValueError, match="bid 'x': negative quantity"):
        replace(case, bids=[bid("x", "d1", 0, UP, -1.0, 1.0, T)])
    with pytest.raises(ValueError, match="bid 'x': a partial bid needs"):
        replace(case, bids=[bid("x", "d1", 0, UP, 1.0, 1.0, T, format="partial", min_mw=2.0)])
    small = [bid(f"u{i}", "d1", 1, UP, 0.1 * (i + 1), 10.0 + i, T, fsp="agg") for i in range(3)]
    kept, dropped = aggregate(small + [bid("tiny", "d1", 2, UP, 0.05, 1.0, T, fsp="solo")], min_size_mw=0.1)
    assert [b.name for b in dropped] == ["tiny"]
    (agg,) = kept
    np.testing.assert_allclose(agg.quantity_mw, 0.6)
    np.testing.assert_allclose(agg.price * agg.quantity_mw, sum(b.price * b.quantity_mw for b in small))
    marked = with_markups(small, by_kind={"": 0.5})
    np.testing.assert_allclose([b.price[0] for b in marked], [15.0, 16.5, 18.0])


def test_effects_balance_the_transmission_and_follow_the_ptdf(case):
    """A TSO bid pair (up at bus 2, down at bus 0) is balanced and moves line 0-1 by the PTDF
    difference; a DSO's up bid lowers its import by about what it injects."""
    x = np.zeros((len(case.bids), T))
    names = [b.name for b in case.bids]
    x[names.index("g2 up")] = 3.0
    x[names.index("g0 down")] = 3.0
    e = effects(case, x)
    np.testing.assert_allclose(e["imbalance_mw"], 0.0, atol=1e-12)
    np.testing.assert_allclose(e["flows_mw"][0] - case.tso.base_flow_mw[0], 3.0 * (case.tso.ptdf[0, 2] - case.tso.ptdf[0, 0]))
    x[:] = 0.0
    x[names.index("d1 dg up")] = 1.0
    imports = effects(case, x)["imports_mw"]["d1"]
    assert -1.0 < imports[0] < -0.98


def test_a_market_from_a_study_has_its_ders_as_bids_and_a_balanced_baseline():
    """runs/pv_centralized.yaml at noon, 4 hourly periods (real IEEE 30, IEEE 13 and IEEE 123
    with PV and batteries): one bid per PV unit and direction of each battery, two per
    generator; the energy market's baseline balances; the common market costs no more than
    the SOs alone (cost and penalties: unfixable violations stay in both)."""
    from benchmarks.coordinator_resolve import measured
    from coordination.market.from_study import MarketSettings, market_case
    from coordination.receding_horizon import RecedingHorizon
    from scenario.schema import load_scenario
    from tests.conftest import ROOT

    scenario = load_scenario(ROOT / "runs" / "pv_centralized.yaml", {
        "coordination.horizon": "4h", "coordination.interval": "1h", "time.start": "2024-07-01T11:00:00"})
    rh = RecedingHorizon(scenario, build_problem=False)  # the market needs its data, not its OPF
    case = market_case(rh, 1, measured(rh), MarketSettings(der_prices={"pv": 20.0, "battery": 10.0}))
    kinds = {}
    for b in case.bids:
        kinds[b.kind] = kinds.get(b.kind, 0) + 1
    n_pv = sum(len(s.ders["pv"]) for s in rh.setups.values())
    n_bat = sum(len(s.ders["batteries"]) for s in rh.setups.values())
    assert kinds["pv"] == n_pv and kinds["battery"] == 2 * n_bat
    assert kinds["generator"] <= 2 * len(rh.transmission.generators)
    assert all(np.all(b.price == 20.0) for b in case.bids if b.kind == "pv")
    # The baseline flows are those of a balanced injection (the dispatch met load + imports).
    e = effects(case, np.zeros((len(case.bids), case.periods)))
    np.testing.assert_allclose(e["imbalance_mw"], 0.0, atol=1e-6)
    common, disjoint = mc.common(case), mc.disjoint(case)
    assert common.optimal and disjoint.optimal
    assert common.cost + common.penalty <= disjoint.cost + disjoint.penalty + 1e-6


def test_admm_clears_the_common_market_without_a_central_model(case):
    """Each SO solves only its own grid; they agree on the interfaces. Within 0.1 % of the
    central common market's cost at its interface prices, every limit and the balance kept. (Not the same imports:
    this case's optimum is not unique, d1 can take part of its export in period 0 or not at
    the same cost.)"""
    from coordination.market.admm import admm

    common = mc.common(case)
    out = admm(case, rho=10.0, max_iterations=2000, tol_mw=1e-6)
    assert out.converged, (out.iterations, out.history[-5:])
    assert out.cost == pytest.approx(common.cost, rel=1e-3)
    assert all(v == 0.0 for v in out.violations.values()), out.violations  # imbalance_mwh among them
    prices = mc.interface_prices(common, case)
    for d in case.dsos:
        np.testing.assert_allclose(out.prices[d], prices[d], rtol=1e-3)
    with pytest.raises(ValueError, match="divisible bids only"):
        admm(replace(case, bids=[replace(case.bids[0], format="indivisible"), *case.bids[1:]]))


def test_tandem_market_clears_a_scenarios_gate_and_refuses_bad_input(tmp_path):
    """The command end to end on runs/pv_centralized.yaml at noon: a row per model asked for,
    the CSV, the allocation's rows; a one-line error and exit 2 for an unknown model, and for a
    scenario without a coordinator (no look-ahead to clear over)."""
    import csv

    import yaml

    from tests.conftest import ROOT, tandem

    scenario = ROOT / "runs" / "pv_centralized.yaml"
    out = tmp_path / "market.csv"
    done = tandem("market", str(scenario), "--time", "4h", "--models", "common,disjoint,fragmented",
                  "--pricing", "optimal", "--allocate", "-o", str(out), timeout=600)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["market"] for r in rows] == ["common", "disjoint", "fragmented optimal"]
    costs = {r["market"]: float(r["cost"]) for r in rows}
    assert costs["fragmented optimal"] == pytest.approx(costs["common"], rel=1e-6)
    assert "shapley" in done.stdout and "in the Core" in done.stdout
    bad = tandem("market", str(scenario), "--time", "4h", "--models", "bilateral")
    assert bad.returncode == 2 and "unknown market model 'bilateral'" in bad.stdout + bad.stderr
    none = tmp_path / "none.yaml"
    data = yaml.safe_load(scenario.read_text())
    data["coordination"] = {"scheme": "none"}
    none.write_text(yaml.safe_dump(data))
    refused = tandem("market", str(none), "--time", "4h")
    assert refused.returncode == 2 and "coordination.scheme" in refused.stdout + refused.stderr
