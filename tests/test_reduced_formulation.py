"""The reduced feeder formulation (DER variables only, the network through its affine map,
rows added lazily) gives the full LinDist3Flow formulation's optimum and plans."""

from __future__ import annotations

import copy

import numpy as np
import pyomo.environ as pyo
import pytest

from coordination.distribution import snapshot
from coordination.feeder_response import feeder_response
from tests.conftest import ROOT
from tests.test_coordination_centralized import t_and_d

PV_CENTRALIZED = ROOT / "runs" / "pv_centralized.yaml"


def full_objective_at(full, reduced) -> float:
    """The full problem's optimum with every DER variable the reduced feeders see fixed at the
    reduced solution (bounds restored afterwards): equal to the full optimum iff the reduced
    plan is optimal for the full model."""
    s = full.solver
    x = reduced.solver.solution()
    fixed, values = [], []
    for r in reduced.reduced.values():
        cols = reduced.solver.positions(r.unit_vars)
        fixed += [full.model.find_component(v.name) for v in r.unit_vars]
        values.append(x[cols])
    values = np.concatenate(values)
    s.set_bounds(fixed, values, values)
    stats = s.solve(push=False)
    s.set_bounds(fixed, [-np.inf if v.lb is None else v.lb for v in fixed], [np.inf if v.ub is None else v.ub for v in fixed])
    assert stats.optimal, stats.status
    return stats.objective


def test_map_equals_the_full_model_with_voltage_dependent_loads_and_capacitors(ieee13):
    """The affine map reproduces a LinDist3Flow solve (loads that follow w, capacitors Q0 w, taps)."""
    assert ieee13.capacitors and any(br.kind == "regulator" for br in ieee13.branches)
    r = feeder_response(ieee13, True)
    levels = np.linspace(0.5, 1.2, len(ieee13.loads))
    ref = snapshot(ieee13, v_source=1.02, load_levels=levels)
    nodes, p_map, q_map = ieee13.load_matrix()
    at = [r.nodes.index(n) for n in nodes]
    p, q = np.zeros((len(r.nodes), 1)), np.zeros((len(r.nodes), 1))
    p[at, 0], q[at, 0] = p_map @ levels, q_map @ levels
    w = r.offsets("w", p, q, np.array([1.02 ** 2]))[:, 0]
    np.testing.assert_allclose(np.sqrt(w), [ref["v_pu"][n] for n in r.nodes], atol=1e-9)
    head = r.offsets("p_head", p, q, np.array([1.02 ** 2]))[:, 0]
    assert head.sum() == pytest.approx(ref["p_kw"], rel=1e-9)
    assert feeder_response(copy.deepcopy(ieee13), True) is r  # one factorisation per model and ratios


@pytest.mark.parametrize("rows", ["lazy", "screened"])
@pytest.mark.parametrize("v_max", [1.1, 1.03, 1.0])
def test_same_optimum_as_full_including_binding_left_out_rows(ieee13, rows, v_max):
    """Voltage-dependent loads, capacitors, branch limits on: the reduced optimum is the full one,
    also when v_max makes voltage rows binding (1.03) or broken (1.0, penalised). The lazy loop
    had to add rows there (it started with none), and the reduced plan is optimal in the full
    model and predicts its voltages."""
    common = dict(voltage_dependent_loads=True, feeder_flow_limits=True, flow_limit_screen=None,
                  battery_binaries="relaxed")
    full = t_and_d(ieee13, feeder_model="full", **common)
    red = t_and_d(ieee13, feeder_model="reduced", feeder_rows=rows, **common)
    set_v_max(full, v_max)
    set_v_max(red, v_max)
    a = full.solve()
    b = red.solve()
    assert a.optimal and b.optimal
    assert b.objective == pytest.approx(a.objective, rel=1e-6)
    assert rows == "screened" or red.n_variables < full.n_variables / 3
    assert full_objective_at(full, red) == pytest.approx(a.objective, rel=1e-6)
    for name, value in a.slacks.items():
        assert b.slacks[name] == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_schemes_case_with_flexible_loads_and_evs(ieee13):
    """The schemes' case (two feeders with copies, PV, batteries, a flexible load whose baseline
    is a constant in its injection, an EV): same optimum. (The lazy check once read injections
    without their constants and missed a broken row here.)"""
    from coordination.centralized import CentralizedProblem
    from tests.test_coordination_schemes import case_data, feeders, options, transmission

    results = {}
    for model in ("full", "reduced"):
        prob = CentralizedProblem(transmission(), feeders(ieee13), options(feeder_model=model))
        prob.update(**case_data(ieee13))
        results[model] = (prob, prob.solve())
    (full, a), (red, b) = results["full"], results["reduced"]
    assert b.objective == pytest.approx(a.objective, rel=1e-9)
    assert full_objective_at(full, red) == pytest.approx(a.objective, rel=1e-9)


def test_tightened_limit_binds_a_row_left_out(ieee13):
    """v_max at 1.0 on a reduced problem built lazily: the first LP breaks rows it does not have;
    the loop adds them and ends at the full optimum; a second solve needs no more rounds."""
    full = t_and_d(ieee13, feeder_model="full", voltage_dependent_loads=True, battery_binaries="relaxed")
    red = t_and_d(ieee13, voltage_dependent_loads=True, battery_binaries="relaxed", feeder_model="reduced")
    set_v_max(full, 1.0)
    set_v_max(red, 1.0)
    a, b = full.solve(), red.solve()
    assert red.lazy_rounds > 0 and b.slacks["voltage_violation_pu2h"] > 0
    assert b.objective == pytest.approx(a.objective, rel=1e-6)
    hi_full = max(v.max() for v in a.voltages["f"].values())
    hi_red = max(v.max() for v in b.voltages["f"].values())
    assert hi_red == pytest.approx(hi_full, abs=1e-6)
    again = red.solve()
    assert red.lazy_rounds == 0 and again.objective == pytest.approx(b.objective, rel=1e-9)


def set_v_max(prob, v_max: float) -> None:
    """A new upper voltage limit on a built problem (full: the rows' bounds; reduced: the rows
    checked and added from now on)."""
    fb = prob.model.feeders["f"]
    if prob.reduced:
        r = fb.reduced
        r.w_hi = v_max ** 2
        for i, j in r.kept["upper"]:
            fb.v_upper[(*r.limited[i], r.periods[j])].set_value(r._row("upper", (i, j)))
        return
    for (bus, ph, t), con in fb.v_upper.items():
        con.set_value(fb.w[bus, ph, t] - fb.s_v_hi[bus, ph, t] <= v_max ** 2)


def test_tap_change_rewrites_the_reduced_rows(ieee13):
    """New regulator ratios between solves: the reduced problem follows the full one."""
    full = t_and_d(ieee13, feeder_model="full", voltage_dependent_loads=True, battery_binaries="relaxed")
    red = t_and_d(ieee13, voltage_dependent_loads=True, battery_binaries="relaxed", feeder_model="reduced")
    set_v_max(full, 1.02)
    set_v_max(red, 1.02)
    full.solve(), red.solve()
    tapped = copy.deepcopy(ieee13)
    for br in tapped.branches:
        if br.kind == "regulator":
            br.ratio = np.asarray(br.ratio) + 0.0125
    for prob in (full, red):
        prob.update(ratios={"f": tapped})
    a, b = full.solve(), red.solve()
    assert a.optimal and b.optimal
    assert b.objective == pytest.approx(a.objective, rel=1e-6)
    assert b.feeder_p_kw["f"] == pytest.approx(a.feeder_p_kw["f"], abs=1e-3) or \
        full_objective_at(full, red) == pytest.approx(a.objective, rel=1e-6)


def test_held_regulators_same_optimum(ieee13):
    """Regulators holding their load-side voltage: the held voltage is an input of the map;
    the reduced problem follows the full one as the held voltage changes between solves."""
    held = [(br.to_bus, p) for br in ieee13.branches if br.kind == "regulator" for p in br.phases]
    common = dict(voltage_dependent_loads=True, battery_binaries="relaxed", regulators="hold")
    full = t_and_d(ieee13, feeder_model="full", **common)
    red = t_and_d(ieee13, feeder_model="reduced", **common)
    set_v_max(full, 1.04)
    set_v_max(red, 1.04)
    for v in (1.0, 1.035, 1.02):
        for prob in (full, red):
            prob.update(held_voltage={"f": {node: v for node in held}})
        a, b = full.solve(), red.solve()
        assert a.optimal and b.optimal
        assert b.objective == pytest.approx(a.objective, rel=1e-6)
        assert full_objective_at(full, red) == pytest.approx(a.objective, rel=1e-6)
        assert b.voltages["f"][held[0]] == pytest.approx(v, abs=1e-9)
    with pytest.raises(ValueError, match="feeder_model"):
        t_and_d(ieee13, feeder_model="tiny")


@pytest.mark.parametrize("vdep", [True, False])
def test_voltages_predicted_as_the_full_model(ieee13, vdep):
    """With the DERs fixed at the reduced plan, the full model's voltages and head power are
    the reduced prediction (the map is exact, not an approximation of LinDist3Flow)."""
    common = dict(voltage_dependent_loads=vdep, battery_binaries="relaxed")
    full = t_and_d(ieee13, feeder_model="full", **common)
    red = t_and_d(ieee13, feeder_model="reduced", **common)
    red_result = red.solve()
    full.solve()
    full_objective_at(full, red)  # leaves the full solution at the reduced plan
    x = full.solver.solution()
    fb = full.model.feeders["f"]
    for node, v in red_result.voltages["f"].items():
        w = x[full.solver.positions(fb.w[(*node, t)] for t in fb.T)]
        assert v == pytest.approx(np.sqrt(w), abs=1e-9)
    p_sub = np.array([full.solver.linear(fb.p_sub[t]).value(x) for t in fb.T])
    assert red_result.feeder_p_kw["f"] == pytest.approx(p_sub, abs=1e-6)


def test_receding_horizon_on_pv_centralized_plans_as_full():
    """runs/pv_centralized.yaml (regulators at fixed ratios): at every re-solve of the first
    hour of plans the reduced objective is the full one and its plan is optimal for the full
    model."""
    from benchmarks.coordinator_resolve import measured
    from coordination.receding_horizon import RecedingHorizon
    from scenario.schema import load_scenario

    rhs = {fm: RecedingHorizon(load_scenario(PV_CENTRALIZED, {"coordination.regulators": "fixed_ratio",
                                                              "coordination.feeder_model": fm}))
           for fm in ("full", "reduced")}
    assert rhs["reduced"].problem.reduced and not rhs["full"].problem.reduced
    for step in range(1, 5):
        plans = {fm: rh.plan(step, measured(rh)) for fm, rh in rhs.items()}
        a, b = plans["full"].result, plans["reduced"].result
        assert a.optimal and b.optimal
        assert b.objective == pytest.approx(a.objective, rel=1e-6)
        assert full_objective_at(rhs["full"].problem, rhs["reduced"].problem) == pytest.approx(a.objective, rel=1e-6)
    assert rhs["reduced"].problem.n_variables < rhs["full"].problem.n_variables / 2
    assert pyo.value(rhs["reduced"].problem.model.feeders["f123"].multiplier) >= 1


def test_benchmark_case_small_same_lp_optima():
    """The benchmark's case (IEEE 118 + IEEE 123 with PV and batteries, regulators held) at
    1 feeder x 8 periods: at the first solve and every re-solve the LP optima agree (the final
    objectives after relax-and-fix need not: its fixings follow the LP's vertex)."""
    from benchmarks.coordinator_resolve import side_by_side

    out = side_by_side(1, 8, 3, ["full", "reduced"])
    np.testing.assert_allclose(out["reduced"]["lps"], out["full"]["lps"], rtol=1e-6)
    assert out["reduced"]["cols"] < out["full"]["cols"] / 2


def test_periods_of_different_lengths_same_optimum_as_full(ieee13):
    """coordination.resolution with the reduced feeders: slacks of long periods weigh their
    hours in the reduced model as in the full one (v_max 1.0 breaks rows in every period)."""
    from tests.test_coordination_centralized import H

    hours = tuple([0.5] * (H // 2) + [2.0] * (H - H // 2))
    common = dict(voltage_dependent_loads=True, feeder_flow_limits=True, flow_limit_screen=None,
                  battery_binaries="relaxed", period_hours=hours)
    full = t_and_d(ieee13, feeder_model="full", **common)
    red = t_and_d(ieee13, feeder_model="reduced", **common)
    set_v_max(full, 1.0)
    set_v_max(red, 1.0)
    a, b = full.solve(), red.solve()
    assert a.optimal and b.optimal and a.slacks["voltage_violation_pu2h"] > 0
    assert b.objective == pytest.approx(a.objective, rel=1e-6)
    assert b.slacks["voltage_violation_pu2h"] == pytest.approx(a.slacks["voltage_violation_pu2h"], rel=1e-5)
