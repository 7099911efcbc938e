"""TSO-DSO coordination schemes on a small T&D case: three transmission buses, two IEEE 13-node
feeders (ten and five copies) with PV, batteries, a flexible load and an EV charger, six
hourly periods, and a head voltage at which the larger feeder's PV export meets the 1.05 pu
limit at midday."""

from __future__ import annotations

import gc
import types

import numpy as np
import pyomo.environ as pyo
import pytest

from coordination.centralized import CentralizedProblem, FeederSetup
from coordination.ders import FeederDers
from coordination.ders.battery import BatteryData
from coordination.ders.ev import EVData
from coordination.ders.flexible_load import FlexibleLoadData
from coordination.ders.pv import PVData
from coordination.dso import FeederProblem
from coordination.flexibility import Region, directions, region_at
from coordination.network_data import FeederBranch, FeederBus, FeederData, FeederLoad, transmission_data
from coordination.objective import Prices
from coordination.schemes import SCHEMES, AdmmProblem, DsoManagedProblem, HybridProblem, SchemeOptions
from tests.test_coordination_network_data import three_bus_net

H = 6
OWN_LOAD = np.array([60.0, 70.0, 110.0, 120.0, 90.0, 60.0])  # MW at bus 2; the 10/MWh unit has 100 MW
LEVELS = np.array([0.6, 0.5, 0.3, 0.4, 0.8, 0.9])
SUN = np.array([0.0, 0.5, 1.0, 0.8, 0.2, 0.0])


def feeders(data) -> dict[str, FeederSetup]:
    a = FeederDers(pv=[PVData("pv0", "675", 2200.0, 2000.0), PVData("pv1", "652", 550.0, 500.0)],
                   batteries=[BatteryData("bat0", "671", 500.0, 1000.0, soc_initial=0.5, soc_target=0.5),
                              BatteryData("bat1", "634", 200.0, 400.0, soc_initial=0.5, soc_target=0.5)])
    b = FeederDers(pv=[PVData("pv0", "680", 880.0, 800.0)],
                   batteries=[BatteryData("bat0", "692", 300.0, 600.0, soc_initial=0.6, soc_target=0.5)],
                   flexible=[FlexibleLoadData("flex0", "611.3", 100.0, 60.0, 60.0)], evs=[EVData("ev0", "652.1", 50.0)])
    return {"a": FeederSetup(data, bus=2, multiplier=10.0, ders=a, v_min=0.95, v_max=1.05),
            "b": FeederSetup(data, bus=1, multiplier=5.0, ders=b, v_min=0.95, v_max=1.05)}


def case_data(data, levels=LEVELS, sun=SUN) -> dict:
    return dict(
        bus_load_mw={2: OWN_LOAD},
        load_levels={f: np.tile(levels, (len(data.loads), 1)) for f in "ab"},
        pv_available_kw={"a": {"pv0": 2000.0 * sun, "pv1": 500.0 * sun}, "b": {"pv0": 800.0 * sun}},
        battery_soc={"a": {"bat0": 0.5, "bat1": 0.5}, "b": {"bat0": 0.6}},
        ev_plugged={"b": {"ev0": [0, 0, 1, 1, 1, 0]}}, ev_energy_kwh={"b": {"ev0": 80.0}},
        flexible_baseline_kw={"b": {"flex0": [80, 90, 100, 120, 150, 100]}},
        head_voltage={"a": 0.98, "b": 0.99},
    )


def options(**extra) -> SchemeOptions:
    # LP everywhere (batteries' binaries relaxed), so the centralized optimum is a true bound;
    # no feeder flow limits: the IEEE 13 trunk exceeds its default 400 A near peak load.
    extra.setdefault("battery_binaries", "relaxed")
    extra.setdefault("feeder_flow_limits", False)
    return SchemeOptions(horizon=H, prices=Prices(battery_degradation=1.0), **extra)


def transmission():
    net = three_bus_net(rating_13_mw=1000.0)  # no binding line
    net.ext_grid.loc[0, "max_p_mw"] = 100.0
    return transmission_data(net)


def solved(name: str, data, **extra):
    problem = SCHEMES[name](transmission(), feeders(data), options(**extra))
    problem.update(**case_data(data))
    return problem, problem.solve()


@pytest.fixture(scope="module")
def results(ieee13):
    out = {}
    for name in ("tso_managed", "hybrid", "dso_managed", "dso_first", "admm"):
        problem, result = solved(name, ieee13, dso_processes=2 if name == "admm" else None)
        out[name] = (problem, result)
    yield out
    for problem, _ in out.values():
        if hasattr(problem, "close"):
            problem.close()


def test_every_scheme_solves_and_reports_the_centralized_terms(results):
    central = results["tso_managed"][1]
    assert central.optimal and central.slacks["voltage_violation_pu2h"] == pytest.approx(0.0, abs=1e-9)
    # The case binds: feeder a reaches 1.05 pu at midday in the joint optimum.
    assert central.voltage_range("a")[1][2] == pytest.approx(1.05, abs=2e-3)
    for name, (problem, result) in results.items():
        assert result.optimal, name
        assert set(result.terms) == set(central.terms), name
        assert result.objective == pytest.approx(sum(result.terms.values()), rel=1e-9), name
        # The boundary load is multiplier x the realised head power of each feeder.
        assert result.boundary_mw[2] == pytest.approx(10.0 * result.feeder_p_kw["a"] / 1000.0, rel=1e-7, abs=1e-6), name
        assert result.boundary_mw[1] == pytest.approx(5.0 * result.feeder_p_kw["b"] / 1000.0, rel=1e-7, abs=1e-6), name
        for feeder in ("a", "b"):
            lo, hi = result.voltage_range(feeder)
            assert np.all(lo > 0.95 - 1e-6) and np.all(hi < 1.05 + 1e-6), name
            setpoints = problem.fleet_setpoints(result, feeder, period=2)
            assert set(setpoints.battery) == {u.name for u in problem.feeders[feeder].ders["batteries"]}
        assert result.exchange is not None and result.exchange.scheme == name
        assert result.exchange.tso_needs and result.exchange.dso_needs


def test_centralized_optimum_bounds_the_other_schemes(results):
    """Every scheme's objective is the centralized objective of a feasible point of the
    centralized problem, so none can beat it; hybrid and dso_managed, which see the other
    operator's network only through ranges or regions, do worse here."""
    central = results["tso_managed"][1].objective
    for name in ("hybrid", "dso_managed", "dso_first", "admm"):
        assert results[name][1].objective >= central - 1e-6 * abs(central), name
    assert results["hybrid"][1].objective > central + 1.0
    assert results["dso_managed"][1].objective > central + 1.0


def test_admm_reaches_the_centralized_optimum_in_parallel_processes(results):
    problem, result = results["admm"]
    central = results["tso_managed"][1]
    assert problem.pool.processes == 2  # one worker process per feeder
    assert result.exchange.converged
    assert abs(result.objective - central.objective) <= 0.01 * abs(central.objective)
    residuals = result.exchange.residuals
    assert len(residuals) == result.exchange.iterations >= 2
    assert [r["iteration"] for r in residuals] == list(range(1, len(residuals) + 1))
    last = residuals[-1]
    assert last["primal"] <= last["eps_primal"] and last["dual"] <= last["eps_dual"]
    assert any(r["primal"] > r["eps_primal"] or r["dual"] > r["eps_dual"] for r in residuals[:-1])
    # Two messages per feeder and iteration (TSO: P and price; DSO: P), the first plans and the realised P.
    per_iteration = [m for m in result.exchange.messages if m.iteration > 0]
    assert len(per_iteration) == 2 * 2 * len(residuals)
    assert sum(m.n_values for m in per_iteration) == len(residuals) * 2 * (2 * H + H)
    # Warm start: the next solve (same data) starts from the converged copies and prices.
    again = problem.solve()
    assert again.exchange.converged and again.exchange.iterations < result.exchange.iterations
    assert again.objective == pytest.approx(result.objective, rel=1e-6)


def test_feeder_region_contains_the_centralized_operating_points(ieee13, results):
    """The exact P-Q region of every period holds the head power the joint optimum chose:
    inside the outer polygon (which every feasible point is) and inside the hull of the
    support points (which only feasible points are)."""
    central = results["tso_managed"][1]
    data = case_data(ieee13)
    for name, setup in feeders(ieee13).items():
        problem = FeederProblem(setup, options(), directions=True)
        problem.update(**{key: values[name] for key, values in data.items() if name in values})
        for t in range(H):
            region = region_at(problem, t, n_directions=16)
            p, q = central.feeder_p_kw[name][t], central.feeder_q_kvar[name][t]
            assert region.contains(p, q, tol=1e-3), (name, t)
            extent = np.ptp(region.vertices(), axis=0).max()
            assert region.contains(p, q, tol=1e-3 * extent, inner=True), (name, t)
            # Not a region that holds everything: a point 1 MW beyond its largest P is outside.
            assert not region.contains(region.p_range()[1] + 1000.0, q)


def test_dso_managed_meets_every_target_inside_its_region(ieee13, results):
    problem, result = results["dso_managed"]
    regions = problem.last_regions
    agent = problem.pool.agents["a"]
    for name in ("a", "b"):
        points, costs = regions[name]["points"], regions[name]["costs"]
        assert points.shape == (H, 17, 2) and costs.shape == (H, 17)
        p_target, q_target = problem.last_targets[name]
        for t in range(H):
            inner = Region(t, directions(16), np.zeros(16), points[t, 1:], costs[t, 1:], points[t, 0], costs[t, 0])
            assert inner.contains(p_target[t], q_target[t], tol=1e-3, inner=True)
        assert result.feeder_p_kw[name] == pytest.approx(p_target, abs=1e-3)
        assert result.feeder_q_kvar[name] == pytest.approx(q_target, abs=1e-3)
    # Any other targets inside the reported regions are met too: random convex combinations.
    rng = np.random.default_rng(3)
    points = regions["a"]["points"]
    for _ in range(3):
        weights = rng.dirichlet(np.ones(points.shape[1]) * 0.3, size=H)
        target = np.einsum("tk,tkj->tj", weights, points)
        out = agent.follow(target[:, 0], target[:, 1])
        assert out.p_kw == pytest.approx(target[:, 0], abs=1e-3)
        assert out.q_kvar == pytest.approx(target[:, 1], abs=1e-3)
    # A target no dispatch reaches is missed (the regions are inner approximations: the feeder
    # can do somewhat more than they show, but not 5 MW more than its largest P).
    target = np.einsum("tk,tkj->tj", np.full((H, points.shape[1]), 1.0 / points.shape[1]), points)
    target[2, 0] = points[2, :, 0].max() + 5000.0
    out = agent.follow(target[:, 0], target[:, 1])
    assert abs(out.p_kw[2] - target[2, 0]) > 1000.0
    agent.own()


def test_hybrid_ranges_are_safe_in_every_combination(ieee13, results):
    """Any corner of the validated boxes, period by period, keeps the feeder within its
    voltage limits when the DSO applies it; the validation did cut the ranges where the
    voltage limit binds."""
    problem, result = results["hybrid"]
    agent = problem.pool.agents["a"]
    offer = agent.validate()
    low, high = agent.validator.technical_ranges(offer.q)
    cut = sum((high[u] - low[u]) - (offer.hi[u] - offer.lo[u]) for u in offer.lo)
    assert np.all(cut >= -1e-6)
    assert cut[2] > 100.0  # midday export would raise the voltage above 1.05 pu: ranges cut
    assert cut[0] == pytest.approx(0.0, abs=1e-6)  # light load, no sun: nothing binds
    # The network alone decides here: a copy of the DSO model without the SOC and energy
    # constraints (corners need not be a feasible battery schedule; the TSO sees to that).
    network_only = FeederProblem(feeders(ieee13)["a"], options(), der_targets=True, robust=True)
    data = case_data(ieee13)
    network_only.update(**{key: values["a"] for key, values in data.items() if "a" in values})
    rng = np.random.default_rng(7)
    for _ in range(8):
        corner = {u: np.where(rng.random(H) < 0.5, offer.lo[u], offer.hi[u]) for u in offer.lo}
        network_only.set_params(der_target=corner, weight_der=1e5)
        out = network_only.solve()
        assert out.optimal
        assert network_only.values("der_up").max() < 1e-6 and network_only.values("der_down").max() < 1e-6
        assert out.slacks["voltage_violation_pu2h"] == pytest.approx(0.0, abs=1e-9)
    # Beyond the ranges the network does object: all PV at full output at midday.
    corner = {u: offer.lo[u].copy() for u in offer.lo}
    corner["pv/pv0"][2], corner["pv/pv1"][2] = 2000.0, 500.0
    corner["battery/bat1"][2] = 200.0
    network_only.set_params(der_target=corner, weight_der=1e5)
    out = network_only.solve()
    violated = out.slacks["voltage_violation_pu2h"] > 1e-9 or network_only.values("der_up").max() > 1e-3 \
        or network_only.values("der_down").max() > 1e-3
    assert violated
    # The TSO's dispatch stayed within the ranges, and the DSO applied it.
    for u in offer.lo:
        applied = result.setpoints["a"][u.split("/")[1]]["p_kw"]
        assert np.all(applied >= offer.lo[u] - 1e-6) and np.all(applied <= offer.hi[u] + 1e-6)


def test_hybrid_priority_rule(ieee13):
    """With DSO priority the ranges hold the DSO's own dispatch; with TSO priority they need not,
    and are at least as wide in total."""
    offers = {}
    for priority in ("dso", "tso"):
        problem, _ = solved("hybrid", ieee13, hybrid_priority=priority)
        agent = problem.pool.agents["a"]
        offers[priority] = agent.validate()
        reference = agent.models["main"].unit_power()
        if priority == "dso":
            for u, lo in offers["dso"].lo.items():
                assert np.all(lo <= reference[u] + 1e-6) and np.all(offers["dso"].hi[u] >= reference[u] - 1e-6)
    width = {p: sum(float(np.sum(o.hi[u] - o.lo[u])) for u in o.lo) for p, o in offers.items()}
    assert width["tso"] >= width["dso"] - 1e-6
    with pytest.raises(ValueError, match="hybrid_priority"):
        HybridProblem(transmission_data(three_bus_net()), feeders(ieee13), options(hybrid_priority="both"))


def _objects(root):
    """Every object reachable from root (gc referents), not through classes, modules or
    functions' globals (closures are followed)."""
    seen, stack = {}, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType)):
            continue
        seen[id(obj)] = obj
        if isinstance(obj, types.FunctionType):
            for cell in obj.__closure__ or ():
                try:
                    stack.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
            continue
        stack.extend(gc.get_referents(obj))
    return seen.values()


DISTRIBUTION_COMPONENTS = {"nodes", "flow_nodes", "w", "P", "Q", "p_balance", "q_balance", "voltage_drop", "p_load",
                           "q_load", "v_upper", "v_lower", "flow_limit", "head_voltage", "v_source", "feeder"}


@pytest.mark.parametrize("name", ["hybrid", "dso_managed", "dso_first", "admm"])
def test_tso_problems_hold_no_distribution_data(ieee13, results, name):
    problem = results[name][0]
    bus_names = set(ieee13.buses)
    tso_models = [p for p in (problem.tso, problem.settlement) if p is not None]
    for tso in tso_models:
        names = {c.local_name for c in tso.model.component_objects(descend_into=True)}
        assert not names & DISTRIBUTION_COMPONENTS, (name, names & DISTRIBUTION_COMPONENTS)
        for component in tso.model.component_objects((pyo.Var, pyo.Param, pyo.Constraint, pyo.Set), descend_into=True):
            for index in (component.index_set() if component.is_indexed() else []):
                parts = index if isinstance(index, tuple) else (index,)
                assert not any(isinstance(x, str) and x in bus_names for x in parts), (name, component.name, index)
        # Nothing the TSO problem holds is feeder network data, or names a feeder bus.
        for obj in _objects(tso):
            assert not isinstance(obj, (FeederData, FeederBus, FeederBranch, FeederLoad)), (name, type(obj))
            if hasattr(obj, "at") and isinstance(obj.at, str):
                assert obj.at == "", (name, obj)
    # The feeders' own models hold their networks (the comparison is not vacuous).
    if hasattr(problem.pool, "agents"):
        assert any(isinstance(obj, FeederData) for obj in _objects(problem.pool.agents["a"]))


def test_exchange_counts(results):
    """What crossed the interface, in numbers, per scheme (two feeders, six periods)."""
    dso_managed = results["dso_managed"][1].exchange
    # Up: 17 points x (P, Q, cost) per period, then the realised P; down: P and Q targets.
    assert dso_managed.values_up() == 2 * (H * 17 * 3 + H)
    assert dso_managed.values_down() == 2 * 2 * H
    dso_first = results["dso_first"][1].exchange
    assert (dso_first.values_up(), dso_first.values_down(), dso_first.n_messages) == (2 * 2 * H, 2 * H, 6)
    hybrid = results["hybrid"][1].exchange
    # Down: every unit's active power per period (feeder a: 4 units, b: 4 units). Up: lo and hi of
    # every unit and q of PV and batteries per period, base per period, one sensitivity per unit,
    # the state (PV available per period; SOC and target; EV plugged per period and energy;
    # load baseline per period), the realised P.
    assert hybrid.values_down() == (4 + 4) * H
    up_a = 4 * 2 * H + 4 * H + H + 4 + (2 * H + 2 * 2)
    up_b = 4 * 2 * H + 2 * H + H + 4 + (H + 2 + (H + 1) + H)
    assert hybrid.values_up() == up_a + up_b + 2 * H
    central = results["tso_managed"][1].exchange
    assert central.values_up() > hybrid.values_up() > 0


def test_resolve_with_new_data_matches_a_fresh_build(ieee13):
    """Scheme problems are built once: new data then a solve give what a new build gives."""
    problem, _ = solved("dso_managed", ieee13)
    data = case_data(ieee13, levels=LEVELS * 0.9, sun=SUN * 0.8)
    problem.update(**data, multipliers={"a": 12.0})
    again = problem.solve()
    fresh_setups = feeders(ieee13)
    fresh_setups["a"].multiplier = 12.0
    fresh = DsoManagedProblem(transmission(), fresh_setups, options())
    fresh.update(**data)
    reference = fresh.solve()
    # dso_managed chains LPs (regions, TSO dispatch, DSO dispatch, settlement): where an earlier
    # one has several optima, a warm and a cold solve may pick different ones, and the final
    # objective may differ in the last digits (seen: 6e-5 once DER reactive power is priced).
    assert again.objective == pytest.approx(reference.objective, rel=1e-4)
    assert again.boundary_mw[2] == pytest.approx(12.0 * again.feeder_p_kw["a"] / 1000.0, rel=1e-7, abs=1e-6)
    with pytest.raises(KeyError, match="unknown feeder"):
        problem.update(head_voltage={"c": 1.0})


def test_registry_and_options(ieee13):
    assert SCHEMES["tso_managed"] is CentralizedProblem
    assert set(SCHEMES) == {"tso_managed", "hybrid", "dso_managed", "dso_first", "admm"}
    with pytest.raises(ValueError, match="region_directions"):
        DsoManagedProblem(transmission_data(three_bus_net()), feeders(ieee13), options(region_directions=2))
    problem = AdmmProblem(transmission_data(three_bus_net()), feeders(ieee13), options(dso_processes=0))
    assert problem.pool.processes == 0
