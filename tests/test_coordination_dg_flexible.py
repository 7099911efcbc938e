"""Dispatchable distributed generators and flexible loads in the look-ahead problems: merit
order against the price at the feeder, ramps, unit commitment against a brute force over
on/off schedules, load shifting toward cheap periods, the cost terms by hand, the units
built from the scenario spec, and their dispatch by every coordination scheme."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from coordination.ders import FeederDers
from coordination.ders.dg import DGData, dg_from_spec, periods_of
from coordination.ders.flexible_load import FlexibleLoadData, flexible_load_from_spec
from coordination.ders.kind import set_series
from coordination.problem import present_terms
from coordination.schemes import SCHEMES
from scenario.schema import DGSpec, FlexibleLoadSpec
from tests.test_coordination_ders import problem
from tests.test_coordination_schemes import H, case_data, feeders, options, transmission

FEEDER_LOAD_MW = 3.3  # roughly what the IEEE 13 feeder draws at its loads' nominal power


def dg(**kw) -> DGData:
    kw.setdefault("kva", 500.0)
    return DGData("g0", "671", 400.0, **kw)


@pytest.mark.parametrize("grid_price, expected_kw", [(40.0, 0.0), (100.0, 200.0), (200.0, 400.0)])
def test_dg_follows_merit_order(ieee13, grid_price, expected_kw):
    """Two 200 kW segments at 50 and 150 per MWh: a segment runs exactly when the price at the
    feeder (here the one unit's cost, the LMP) exceeds its cost; the generation term is the
    segments' cost by hand, and a brute force over outputs finds the same optimum."""
    prob = problem(ieee13, FeederDers(dg=[dg(cost_per_mwh=(50.0, 150.0))]), horizon=3,
                   net={"cost_per_mwh": grid_price}, voltage_dependent_loads=False)
    result = prob.solve()
    assert result.optimal and result.lmp[0] == pytest.approx(grid_price)
    p = result.setpoints["f"]["g0"]["p_kw"]
    assert p == pytest.approx(np.full(3, expected_kw), abs=1e-6)
    by_hand = sum(min(max(p_t - 200.0 * k, 0.0), 200.0) * c / 1000.0 for p_t in p for k, c in enumerate((50.0, 150.0)))
    assert result.terms["dg_generation"] == pytest.approx(by_hand, abs=1e-9)
    # Brute force: the cost of serving the feeder with the genset at each output (lossless feeder).
    outputs = np.linspace(0.0, 400.0, 81)
    cost = grid_price * -outputs / 1000.0 + np.array([sum(min(max(o - 200.0 * k, 0.0), 200.0) * c / 1000.0
                                                          for k, c in enumerate((50.0, 150.0))) for o in outputs])
    assert outputs[np.argmin(cost)] == pytest.approx(expected_kw)
    assert result.setpoints["f"]["g0"]["q_kvar"] == pytest.approx(np.zeros(3), abs=1e-6)  # Q is priced, never needed


def test_dg_ramps_from_its_measured_output(ieee13):
    """Wanting full output (cheap against the grid) but ramping 100 kW/h from the measured
    output; starting at full output it stays there."""
    prob = problem(ieee13, FeederDers(dg=[dg(cost_per_mwh=(20.0,), ramp_kw_per_hour=100.0)]), horizon=4,
                   net={"cost_per_mwh": 200.0}, voltage_dependent_loads=False)
    result = prob.solve()
    assert result.setpoints["f"]["g0"]["p_kw"] == pytest.approx([100.0, 200.0, 300.0, 400.0], abs=1e-6)
    prob.update(dg_output_kw={"f": {"g0": 400.0}})
    assert prob.solve().setpoints["f"]["g0"]["p_kw"] == pytest.approx(np.full(4, 400.0), abs=1e-6)
    # And down: uneconomic now, it can only leave at the ramp rate.
    prob = problem(ieee13, FeederDers(dg=[dg(cost_per_mwh=(300.0,), ramp_kw_per_hour=150.0, p_initial_kw=400.0)]),
                   horizon=4, net={"cost_per_mwh": 10.0}, voltage_dependent_loads=False)
    assert prob.solve().setpoints["f"]["g0"]["p_kw"] == pytest.approx([250.0, 100.0, 0.0, 0.0], abs=1e-6)


def commitment_case(ieee13, min_up=0.0, min_down=0.0):
    """The grid unit (50 per MWh) falls 100 kW short of the feeder in periods 1 and 4 of six:
    the genset (100 per MWh, at least 200 kW when on, 15 per start) covers the gaps. Running on
    through periods 2 and 3 costs 2 x 10 more than the grid, a second start 15: two starts
    unless a minimum up or down time forbids them."""
    unit = dg(cost_per_mwh=(100.0,), commitment=True, p_min_kw=200.0, min_up_hours=min_up, min_down_hours=min_down,
              startup_cost=15.0)
    prob = problem(ieee13, FeederDers(dg=[unit]), horizon=6, net={"cost_per_mwh": 50.0, "own_load_mw": 0.0},
                   voltage_dependent_loads=False)
    prob.update(dg_status={"f": {"g0": (False, 10.0)}})
    base = prob.solve()  # the feeder's draw with the grid unconstrained and the genset off
    draw = base.feeder_p_kw["f"] / 1000.0
    cap = draw.copy()
    cap[[1, 4]] -= 0.1
    prob.update(gen_p_max_mw={"ext_grid:0": cap + 1e-9})
    return prob


def brute_force(prob) -> tuple[float, tuple[int, ...]]:
    """The least objective over every on/off schedule (forced through must_run / must_off);
    schedules breaking the minimum up or down times are infeasible and left out."""
    d = prob.model.feeders["f"].dg["g0"]
    best = (np.inf, ())
    for schedule in itertools.product((0, 1), repeat=6):
        on = np.array(schedule, dtype=float)
        set_series(d.must_run, on, 6)
        set_series(d.must_off, 1.0 - on, 6)
        result = prob.solve()
        if result.optimal and result.objective < best[0] - 1e-9:
            best = (result.objective, schedule)
    set_series(d.must_run, np.zeros(6), 6)
    set_series(d.must_off, np.zeros(6), 6)
    return best


@pytest.mark.parametrize("min_up, min_down, starts", [(0.0, 0.0, 2), (3.0, 0.0, 1), (0.0, 3.0, 1)])
def test_dg_commitment_matches_brute_force(ieee13, min_up, min_down, starts):
    prob = commitment_case(ieee13, min_up, min_down)
    assert prob.is_mip
    result = prob.solve()
    assert result.optimal and result.lmp is None  # a MIP: no prices
    values = result.setpoints["f"]["g0"]
    on = np.round(values["on"])
    p = values["p_kw"]
    assert np.all(p[on == 0] <= 1e-6) and np.all(p[on == 1] >= 200.0 - 1e-6)
    assert on[1] == 1 and on[4] == 1  # the gaps are covered (unserved load costs far more)
    switched = np.diff(np.concatenate([[0.0], on]))
    for s in np.flatnonzero(switched > 0):  # minimum up time from every start
        assert np.all(on[s: s + periods_of(min_up, 1.0)] == 1)
    for s in np.flatnonzero(switched < 0):
        assert np.all(on[s: s + periods_of(min_down, 1.0)] == 0)
    assert np.sum(switched > 0) == starts
    assert result.terms["dg_startup"] == pytest.approx(15.0 * starts)
    objective, schedule = brute_force(prob)
    assert result.objective == pytest.approx(objective, rel=1e-9)
    assert tuple(int(v) for v in on) == schedule


def test_dg_status_holds_min_up_and_down_across_plans(ieee13):
    """Off for one hour of a three-hour minimum down time: it may not start in the first two
    periods, whatever the gaps cost (the load is shed there instead)."""
    prob = commitment_case(ieee13, min_down=3.0)
    prob.update(dg_status={"f": {"g0": (False, 1.0)}})
    on = np.round(prob.solve().setpoints["f"]["g0"]["on"])
    assert on[0] == 0 and on[1] == 0 and on[4] == 1
    prob.update(dg_status={"f": {"g0": (True, 0.0)}}, gen_p_max_mw={"ext_grid:0": 100.0})  # just started, min up 0
    assert np.round(prob.solve().setpoints["f"]["g0"]["on"]) == pytest.approx(np.zeros(6))


def test_flexible_load_moves_toward_cheap_periods_at_its_price(ieee13):
    """Period 1 is short of generation (load shed at 10 000 per MWh): the load moves out of it
    into the other periods, energy-neutrally; the shift set-point and the term by hand. At a
    shift price above what moving saves it stays put."""
    spec = FlexibleLoadSpec(up_pu=0.5, down_pu=0.5, power_factor=1.0, shift_price=7.0)
    unit = flexible_load_from_spec(spec, "fl0", "671", peak_kw=200.0)
    assert (unit.up_kw, unit.down_kw, unit.q_per_p, unit.shift_price) == (100.0, 100.0, 0.0, 7.0)
    prob = problem(ieee13, FeederDers(flexible=[unit]), horizon=3, net={"own_load_mw": 10.0})
    prob.update(flexible_baseline_kw={"f": {"fl0": [200.0, 200.0, 200.0]}}, gen_p_max_mw={"ext_grid:0": [100.0, 13.5, 100.0]})
    result = prob.solve()
    shift = result.setpoints["f"]["fl0"]["shift_kw"]
    assert shift.sum() == pytest.approx(0.0, abs=1e-6)
    assert shift[1] == pytest.approx(-100.0) and shift[0] + shift[2] == pytest.approx(100.0)
    assert result.terms["load_shift"] == pytest.approx(7.0 / 1000.0 * np.abs(shift).sum(), rel=1e-9)
    assert prob.fleet_setpoints(result, "f").flexible_load["fl0"] == pytest.approx(shift[0])
    # Nothing to gain from moving: no shift, no cost.
    prob.update(gen_p_max_mw={"ext_grid:0": 100.0})
    result = prob.solve()
    assert np.abs(result.setpoints["f"]["fl0"]["shift_kw"]).max() < 1e-6 and result.terms["load_shift"] == pytest.approx(0.0)


def test_units_from_the_scenario_spec():
    spec = DGSpec(kva_ratio=1.25, ramp_pu_per_hour=0.5, cost_per_mwh=[80.0, 120.0], commitment=True, p_min_pu=0.3,
                  min_up_hours=2.0, min_down_hours=1.0, startup_cost=25.0)
    unit = dg_from_spec(spec, "g1", "675", 200.0)
    assert (unit.kva, unit.ramp_kw_per_hour, unit.cost_per_mwh, unit.p_min_kw) == (250.0, 100.0, (80.0, 120.0), 60.0)
    assert (unit.commitment, unit.min_up_hours, unit.min_down_hours, unit.startup_cost) == (True, 2.0, 1.0, 25.0)
    assert dg_from_spec(DGSpec(), "g2", "675", 100.0).ramp_kw_per_hour is None
    with pytest.raises(ValueError, match="must not decrease"):
        DGData("g3", "675", 100.0, cost_per_mwh=(50.0, 40.0))


def with_new_kinds(data, commitment: bool = False):
    """The scheme tests' feeders, feeder b with a genset and a second flexible load."""
    out = feeders(data)
    b = out["b"].ders
    b["dg"] = [DGData("g0", "675", 300.0, kva=375.0, cost_per_mwh=(20.0, 60.0), ramp_kw_per_hour=200.0,
                   commitment=commitment, p_min_kw=90.0 if commitment else 0.0, startup_cost=5.0)]
    b["flexible"].append(FlexibleLoadData("flex1", "634", 60.0, 40.0, 40.0, q_per_p=0.3, shift_price=2.0))
    return out


def case_with_new_kinds(data) -> dict:
    values = case_data(data)
    values["flexible_baseline_kw"]["b"]["flex1"] = [50, 60, 70, 80, 60, 50]
    return values


@pytest.fixture(scope="module")
def centralized_new_kinds(ieee13):
    problem = SCHEMES["tso_managed"](transmission(), with_new_kinds(ieee13), options())
    problem.update(**case_with_new_kinds(ieee13))
    return problem.solve()


@pytest.mark.parametrize("name", ["tso_managed", "hybrid", "dso_managed", "dso_first", "admm"])
def test_every_scheme_dispatches_dg_and_flexible_loads(ieee13, centralized_new_kinds, name):
    """Each scheme's result holds the genset's P and Q and the flexible loads' shifts, the new
    terms by name, an objective no better than the centralized one (ADMM within 1 %)."""
    problem = SCHEMES[name](transmission(), with_new_kinds(ieee13), options(dso_processes=0))
    try:
        problem.update(**case_with_new_kinds(ieee13))
        result = problem.solve()
    finally:
        close = getattr(problem, "close", None)
        if close is not None:
            close()
    reference = centralized_new_kinds
    assert result.status in ("optimal", "iteration limit (feasible)")
    assert list(result.terms) == present_terms(f.ders for f in with_new_kinds(ieee13).values())
    assert "dg_generation" in result.terms and "dg_startup" in result.terms
    g = result.setpoints["b"]["g0"]
    assert g["p_kw"].shape == (H,) and g["q_kvar"].shape == (H,)
    assert np.all(g["p_kw"] >= -1e-6) and np.all(g["p_kw"] <= 300.0 + 1e-6)
    assert np.all(np.abs(np.diff(np.concatenate([[0.0], g["p_kw"]]))) <= 200.0 + 1e-6)  # ramps from 0
    assert g["p_kw"].sum() > 1.0  # at 20-60 per MWh against 10-30 plus shed load, it runs somewhere
    for unit in ("flex0", "flex1"):
        shift = result.setpoints["b"][unit]["shift_kw"]
        assert shift.sum() == pytest.approx(0.0, abs=1e-5)
    # The DG's cost as the scheme reports it, by hand from its dispatch (feeder b stands for 5 copies).
    by_hand = 5.0 * sum(min(max(p - 150.0 * k, 0.0), 150.0) * c / 1000.0 for p in g["p_kw"] for k, c in enumerate((20.0, 60.0)))
    assert result.terms["dg_generation"] == pytest.approx(by_hand, rel=1e-6, abs=1e-6)
    assert result.objective >= reference.objective - 1e-6 * abs(reference.objective)
    if name == "admm":
        assert result.objective <= reference.objective + 0.01 * abs(reference.objective)


@pytest.mark.parametrize("name", ["tso_managed", "dso_first"])
def test_commitment_makes_mips_that_schemes_solve(ieee13, name):
    """With commitment the genset's on/off is binary in the centralized and the DSOs' own
    problems (solved as MIPs): the dispatch respects p_min when on."""
    problem = SCHEMES[name](transmission(), with_new_kinds(ieee13, commitment=True), options(dso_processes=0))
    problem.update(**case_with_new_kinds(ieee13))
    result = problem.solve()
    assert result.optimal
    p = result.setpoints["b"]["g0"]["p_kw"]
    on = np.round(result.setpoints["b"]["g0"]["on"])
    assert np.all(p[on == 0] <= 1e-6) and np.all(p[on == 1] >= 90.0 - 1e-6)
    assert result.terms["dg_startup"] == pytest.approx(5 * 5.0 * np.sum(np.diff(np.concatenate([[0.0], on])) > 0))


def test_update_routes_keywords_by_kind():
    """Keywords become a typed Update: transmission fields, and per feeder its network data
    and each unit's data under its kind; unknown keywords are refused."""
    from coordination.update import FeederUpdate, Update

    data = Update.of(bus_load_mw={2: 5.0}, load_levels={"a": np.ones((1, 2))}, pv_available_kw={"a": {"pv0": 3.0}},
                     dg_status={"b": {"g0": (True, 2.0)}}, flexible_baseline_kw={"b": {"fl0": [1.0, 2.0]}})
    assert data.bus_load_mw == {2: 5.0} and set(data.feeders) == {"a", "b"}
    assert data.feeders["a"].ders == {"pv": {"pv0": {"pv_available_kw": 3.0}}}
    assert data.feeders["b"].ders == {"dg": {"g0": {"dg_status": (True, 2.0)}},
                                      "flexible_load": {"fl0": {"flexible_baseline_kw": [1.0, 2.0]}}}
    assert FeederUpdate.of(head_voltage=1.01).head_voltage == 1.01
    with pytest.raises(TypeError, match="unknown data 'pv_kw'"):
        Update.of(pv_kw={"a": {}})
