"""DERs in the look-ahead problem: batteries (SOC bookkeeping, no charging while discharging),
PV limits, flexible loads and EV energy."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from coordination.centralized import CentralizedProblem, FeederSetup, Options
from coordination.ders import FeederDers
from coordination.ders.battery import BatteryData
from coordination.ders.ev import EVData, ev_horizon
from coordination.ders.flexible_load import FlexibleLoadData
from coordination.ders.pv import PVData
from coordination.network_data import transmission_data
from grid.ders import BatteryUnit, Connection, EVCharger, EVSession


def one_bus_net(cost_per_mwh: float = 10.0, p_min_mw: float = 0.0, own_load_mw: float = 10.0):
    """A single 100 kV bus with one unit and a load: the feeder hangs on bus 0."""
    net = pp.create_empty_network(sn_mva=100)
    pp.create_bus(net, vn_kv=100.0)
    pp.create_ext_grid(net, 0, min_p_mw=p_min_mw, max_p_mw=100.0)
    pp.create_load(net, 0, p_mw=own_load_mw)
    pp.create_poly_cost(net, 0, "ext_grid", cp1_eur_per_mw=cost_per_mwh)
    return transmission_data(net)


def problem(data, ders, horizon=4, dt=1.0, **options) -> CentralizedProblem:
    options.setdefault("feeder_flow_limits", False)  # the IEEE 13 trunk exceeds its default 400 A at peak
    return CentralizedProblem(one_bus_net(**options.pop("net", {})), {"f": FeederSetup(data, 0, 1.0, ders, v_min=0.9, v_max=1.1)},
                              Options(horizon=horizon, dt_hours=dt, **options))


def test_battery_soc_reproduces_battery_unit(ieee13):
    """The only unit is cut to 13.2 MW in two periods, below the 13.4 MW demand: the battery
    discharges then rather than leave load unserved. The SOC the model predicts is what
    grid.ders.BatteryUnit books for the same dispatch, period by period."""
    bat = BatteryData("bat0", "675", 400.0, 800.0, eta_charge=0.92, eta_discharge=0.9, soc_min=0.1,
                      soc_max=0.95, soc_initial=0.5, soc_target=0.3)
    prob = problem(ieee13, FeederDers(batteries=[bat]), horizon=6, dt=0.5, battery_binaries="mip",
                   net={"own_load_mw": 10.0})
    prob.update(gen_p_max_mw={"ext_grid:0": [20, 20, 13.2, 13.2, 20, 20]}, battery_soc={"f": {"bat0": 0.5}})
    result = prob.solve()
    assert result.optimal
    plan = result.setpoints["f"]["bat0"]
    assert np.all(np.minimum(plan["charge_kw"], plan["discharge_kw"]) <= 1e-6)
    unit = BatteryUnit("bat0", Connection("675", 3, 4.16), 400.0, 800.0, 0.92, 0.9, 0.1, 0.95, 0.5)
    socs = []
    for p in plan["p_kw"]:
        unit.p_kw = unit.feasible_power(p, 0.5)
        assert unit.p_kw == pytest.approx(p, abs=1e-6)  # the plan respects the unit's limits
        unit.advance(0.5)
        socs.append(unit.soc)
    assert plan["soc"] == pytest.approx(socs, abs=1e-9)
    assert np.any(plan["discharge_kw"] > 1.0)  # the battery does something
    assert socs[-1] >= 0.3 - 1e-9


def test_no_simultaneous_charge_and_discharge(ieee13):
    """Must-run generation 40 kW above demand with the battery full: the LP relaxation dumps the
    excess in battery losses by charging and discharging at once (p_ch - p_dis = 40 kW at
    constant SOC needs p_ch (1 - 0.95^2) = 40 kW); with binaries, relax-and-check (MIP when
    needed) or relax-and-fix (directions fixed, LP again) it can't."""
    demand = snapshot_kw(ieee13)
    net = {"own_load_mw": 10.0, "p_min_mw": 10.0 + demand / 1000 + 0.04}
    bat = BatteryData("bat0", "671", 500.0, 1000.0, soc_min=0.1, soc_max=0.95, soc_initial=0.95, soc_target=0.95,
                      reactive=False)
    results = {}
    for mode in ("relaxed", "mip", "relax-and-check", "relax-and-fix"):
        prob = problem(ieee13, FeederDers(batteries=[bat]), horizon=2, battery_binaries=mode, net=net,
                       voltage_dependent_loads=False)
        results[mode] = prob.solve()
        assert results[mode].optimal, mode
    relaxed = results["relaxed"].setpoints["f"]["bat0"]
    assert np.all(np.minimum(relaxed["charge_kw"], relaxed["discharge_kw"]) > 100.0)
    for mode in ("mip", "relax-and-check", "relax-and-fix"):
        plan = results[mode].setpoints["f"]["bat0"]
        assert np.all(np.minimum(plan["charge_kw"], plan["discharge_kw"]) <= 1e-6), mode
        assert results[mode].slacks["spilled_mwh"] > 0.0
    assert results["relax-and-check"].mip_fallback and results["relax-and-fix"].mip_fallback
    assert results["relax-and-check"].objective == pytest.approx(results["mip"].objective, rel=1e-6)
    assert results["relaxed"].objective < results["mip"].objective
    # Fixing directions is feasible for the MIP, so no better than it; the first LP bounds it below.
    assert results["relax-and-fix"].objective >= results["mip"].objective - 1e-6
    assert results["relax-and-fix"].lp_bound == pytest.approx(results["relaxed"].objective)


def snapshot_kw(data) -> float:
    from coordination.distribution import snapshot

    return snapshot(data, voltage_dependent_loads=False)["p_kw"]


def test_pv_limits_and_curtailment(ieee13):
    """Available 300 kW of a 330 kVA inverter: used in full (curtailment costs, generation costs);
    with a cap of 100 kW available the plan follows it. Reactive power stays in the kVA polygon."""
    pv = PVData("pv0", "680", kva=330.0, pmpp_kw=300.0, q_max_kvar=0.44 * 330.0)
    prob = problem(ieee13, FeederDers(pv=[pv]), horizon=2)
    prob.update(pv_available_kw={"f": {"pv0": [300.0, 100.0]}})
    result = prob.solve()
    plan = result.setpoints["f"]["pv0"]
    assert plan["p_kw"] == pytest.approx([300.0, 100.0])
    assert plan["p_cap_pu"] == pytest.approx([1.0, 1 / 3])
    assert np.all(np.abs(plan["q_kvar"]) <= 0.44 * 330.0 + 1e-6)
    assert np.all(np.hypot(plan["p_kw"], plan["q_kvar"]) <= 330.0 + 1e-6)
    assert result.terms["curtailment"] == pytest.approx(0.0, abs=1e-9)
    # The feeder draws the loads minus the PV (lossless; loads at 1 pu see their nominal power).
    assert prob.fleet_setpoints(result, "f").pv["pv0"][0] == pytest.approx(1.0)


def test_flexible_load_is_energy_neutral(ieee13):
    """A 200 kW load that may move 100 kW between a cheap and a dear period (energy neutral)."""
    flex = FlexibleLoadData("fl0", "671", baseline_kw=200.0, up_kw=100.0, down_kw=100.0)
    prob = problem(ieee13, FeederDers(flexible=[flex]), horizon=2, net={"own_load_mw": 10.0})
    prob.update(gen_p_max_mw={"ext_grid:0": [100.0, 13.5]})  # period 1 short: load moves to period 0
    result = prob.solve()
    p = result.setpoints["f"]["fl0"]["p_kw"]
    assert p.sum() == pytest.approx(400.0)
    assert p[0] > 200.0 + 1.0


def test_ev_energy_and_plugged_hours(ieee13):
    ev = EVData("ev0", "652", max_kw=7.2)
    prob = problem(ieee13, FeederDers(evs=[ev]), horizon=4)
    prob.update(ev_plugged={"f": {"ev0": [0, 1, 1, 0]}}, ev_energy_kwh={"f": {"ev0": 10.0}})
    result = prob.solve()
    p = result.setpoints["f"]["ev0"]["p_kw"]
    assert p[0] == pytest.approx(0.0) and p[3] == pytest.approx(0.0)
    assert p.sum() == pytest.approx(10.0)
    # More energy than the plugged hours allow: the shortfall is a penalised slack.
    prob.update(ev_energy_kwh={"f": {"ev0": 20.0}})
    result = prob.solve()
    assert result.optimal and result.slacks["ev_unmet_kwh"] == pytest.approx(20.0 - 14.4)


def test_ev_horizon_from_sessions():
    unit = EVCharger("ev0", Connection("652.1", 1, 2.4), 7.2, [EVSession(2, 6, 20.0), EVSession(10, 20, 8.0)])
    plugged, need = ev_horizon(unit, 0, 8, 1.0)
    assert plugged.tolist() == [0, 0, 1, 1, 1, 1, 0, 0] and need == pytest.approx(20.0)
    unit.owed_kwh = 12.0
    plugged, need = ev_horizon(unit, 3, 2, 1.0)  # leaves at 6, one hour after the horizon: 12 - 7.2
    assert plugged.tolist() == [1, 1] and need == pytest.approx(12.0 - 7.2)
