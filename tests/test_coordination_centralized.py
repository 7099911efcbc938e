"""The joint T&D look-ahead problem: built once, updated, re-solved."""

from __future__ import annotations

import numpy as np
import pytest

from coordination.centralized import CentralizedProblem, FeederSetup, Options
from coordination.ders import FeederDers
from coordination.ders.battery import BatteryData
from coordination.ders.pv import PVData
from coordination.network_data import transmission_data
from coordination.objective import Prices
from tests.test_coordination_network_data import three_bus_net

H = 6
OWN_LOAD = np.array([60.0, 70.0, 110.0, 120.0, 90.0, 60.0])  # MW at bus 2; the cheap unit has 100 MW
LEVELS = np.array([0.6, 0.8, 1.0, 1.0, 0.8, 0.6])
SUN = np.array([0.0, 0.5, 1.0, 0.8, 0.2, 0.0])


def t_and_d(data, with_battery: bool = True, **options) -> CentralizedProblem:
    net = three_bus_net(rating_13_mw=1000.0)  # no binding line
    net.ext_grid.loc[0, "max_p_mw"] = 100.0
    pv = PVData("pv0", "675", kva=550.0, pmpp_kw=500.0)
    bat = BatteryData("bat0", "671", 500.0, 1000.0, soc_initial=0.5, soc_target=0.5)
    ders = FeederDers(pv=[pv], batteries=[bat] if with_battery else [])
    feeder = FeederSetup(data, bus=2, multiplier=10.0, ders=ders, v_min=0.9, v_max=1.1)
    options.setdefault("feeder_flow_limits", False)
    # Constant-power loads: with voltage-dependent loads, absorbing reactive power lowers the
    # feeder's demand (conservation voltage reduction), which would blur the arbitrage checked here.
    options.setdefault("voltage_dependent_loads", False)
    # Wear at 1/MWh of throughput: arbitrage between 10 and 30/MWh pays (at the default 10/MWh
    # on charge and discharge it would not, with 0.95 x 0.95 round-trip efficiency).
    options.setdefault("prices", Prices(battery_degradation=1.0))
    prob = CentralizedProblem(transmission_data(net), {"f": feeder}, Options(horizon=H, **options))
    prob.update(bus_load_mw={2: OWN_LOAD}, load_levels={"f": np.tile(LEVELS, (len(data.loads), 1))},
                pv_available_kw={"f": {"pv0": 500.0 * SUN}}, battery_soc={"f": {"bat0": 0.5}} if with_battery else None,
                head_voltage={"f": 1.0})
    return prob


def test_dispatch_beats_doing_nothing(ieee13):
    """Perfect forecasts, no binding limits: optimising the battery costs no more than leaving
    it idle (the same problem without it) and here less, since it shifts energy from 10/MWh
    periods to 30/MWh ones; PV is used in full either way."""
    result = t_and_d(ieee13).solve()
    baseline = t_and_d(ieee13, with_battery=False).solve()
    assert result.optimal and baseline.optimal
    assert result.objective <= baseline.objective + 1e-6
    assert result.terms["generation"] < baseline.terms["generation"] - 1.0
    assert sum(result.terms.values()) == pytest.approx(result.objective)
    assert result.setpoints["f"]["pv0"]["p_kw"] == pytest.approx(500.0 * SUN, abs=1e-6)
    assert all(v == pytest.approx(0.0, abs=1e-7) for k, v in result.slacks.items())
    bat = result.setpoints["f"]["bat0"]
    cheap = result.lmp[2] < 20
    assert bat["p_kw"][cheap].sum() < 0 < bat["p_kw"][~cheap].sum()  # charge cheap, discharge dear
    # Boundary load = multiplier x feeder head power (MW).
    assert result.boundary_mw[2] == pytest.approx(10.0 * result.feeder_p_kw["f"] / 1000.0)
    # LMPs (an LP: relax-and-check found no simultaneous use): 10 while the cheap unit's 100 MW
    # cover the demand (own load + 10 feeders), 30 when the dear unit runs.
    demand = OWN_LOAD + result.boundary_mw[2]
    expected = np.where(demand < 100.0 - 1e-6, 10.0, 30.0)
    assert result.lmp[2][np.abs(demand - 100.0) > 1e-3] == pytest.approx(expected[np.abs(demand - 100.0) > 1e-3])
    lo, hi = result.voltage_range("f")
    assert np.all(lo > 0.9 - 1e-6) and np.all(hi < 1.1 + 1e-6)


def test_hard_period_uses_slack_not_infeasibility(ieee13):
    """Period 3 asks for more than all generation (100 + 200 MW): the shortfall is unserved energy."""
    prob = t_and_d(ieee13)
    load = OWN_LOAD.copy()
    load[3] = 450.0
    prob.update(bus_load_mw={2: load})
    result = prob.solve()
    assert result.optimal
    feeder_mw = result.boundary_mw[2][3]
    assert result.slacks["unserved_mwh"] == pytest.approx(450.0 + feeder_mw - 300.0, rel=1e-6)
    assert result.terms["penalty_unserved"] > 0
    assert result.lmp[2][3] == pytest.approx(10_000.0)  # the value of lost load sets the price
    assert len(result.voltages["f"]) == len(ieee13.nodes) - 3  # every node but the source bus's three


def test_resolve_matches_fresh_build_and_is_fast(ieee13):
    """Re-solving the built model with new data gives what a model built with that data gives."""
    prob = t_and_d(ieee13)
    first = prob.solve()
    assert first.n_variables > 0 and first.n_constraints > 0
    new_levels = np.tile(LEVELS * 0.9, (len(ieee13.loads), 1))
    prob.update(load_levels={"f": new_levels}, pv_available_kw={"f": {"pv0": 400.0 * SUN}},
                battery_soc={"f": {"bat0": 0.7}}, head_voltage={"f": 1.01}, multipliers={"f": 12.0})
    again = prob.solve()
    fresh = t_and_d(ieee13)
    fresh.feeders["f"].multiplier = 12.0
    fresh = CentralizedProblem(fresh.transmission_data, fresh.feeders, fresh.options)
    fresh.update(bus_load_mw={2: OWN_LOAD}, load_levels={"f": new_levels}, pv_available_kw={"f": {"pv0": 400.0 * SUN}},
                 battery_soc={"f": {"bat0": 0.7}}, head_voltage={"f": 1.01})
    reference = fresh.solve()
    assert again.objective == pytest.approx(reference.objective, rel=1e-7)
    assert again.boundary_mw[2] == pytest.approx(12.0 * again.feeder_p_kw["f"] / 1000.0)
    # (the battery's timing among equally priced periods may differ: the optimum is unique only in value)
    assert again.solve_s < first.solve_s  # no model to build
    assert again.highs_s > 0 and again.update_s > 0 and again.read_s > 0
    setpoints = prob.fleet_setpoints(again, "f")
    assert set(type(setpoints).model_fields) == {"pv", "battery", "ev", "dg", "flexible_load"}
    assert setpoints.battery["bat0"][0] == pytest.approx(again.setpoints["f"]["bat0"]["p_kw"][0])


def test_feeder_flow_limits_and_mip_mode(ieee13):
    """With the IEEE 13 default ratings (400 A) the trunk is over its limit at peak load: the
    overload is a penalised slack. Binaries kept as a MIP give no LMPs."""
    result = t_and_d(ieee13, feeder_flow_limits=True, battery_binaries="mip").solve()
    assert result.optimal
    assert result.slacks["feeder_overload_kvah"] > 0
    assert result.terms["penalty_feeder_overload"] > 0
    assert result.lmp is None
