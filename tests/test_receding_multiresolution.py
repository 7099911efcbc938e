"""Multi-resolution look-ahead horizons (issue #15 item 3): fine periods near now, coarse
ones further out, each with its own length in every energy, cost and ramp."""

from __future__ import annotations

import numpy as np
import pytest

from coordination.ders import BY_NAME, FeederDers
from coordination.ders.battery import BatteryData
from coordination.ders.ev import EVData
from coordination.ders.flexible_load import FlexibleLoadData
from scenario.schema import ScenarioError, load_scenario
from tests.conftest import ROOT
from tests.test_coordination_ders import problem
from timeseries import forecasts

PV_CENTRALIZED = ROOT / "runs" / "pv_centralized.yaml"
HOURS = (0.25, 0.25, 0.25, 0.25, 1.0, 1.0, 2.0)  # 15 minutes for an hour, then hourly, then 2 h


def test_energies_use_each_periods_length(ieee13):
    """Generation is cut in the coarse periods: the battery charges in the fine ones and
    discharges across the change of resolution. Its SOC moves by exactly
    (eta_c p_ch - p_dis / eta_d) dt[t] / kWh in every period (1e-9), the EV gets its kWh as
    sum p dt[t], the flexible load moves energy, not power (sum (up - down) dt[t] = 0), and
    the costs count each period's hours."""
    bat = BatteryData("bat0", "675", 400.0, 400.0, eta_charge=0.92, eta_discharge=0.9, soc_initial=0.5, soc_target=0.5)
    ev = EVData("ev0", "652", max_kw=7.2)
    flex = FlexibleLoadData("fl0", "671", baseline_kw=200.0, up_kw=100.0, down_kw=100.0)
    H = len(HOURS)
    prob = problem(ieee13, FeederDers(batteries=[bat], evs=[ev], flexible=[flex]), horizon=H, dt=0.25,
                   period_hours=HOURS, battery_binaries="mip", net={"own_load_mw": 10.0})
    prob.update(gen_p_max_mw={"ext_grid:0": [20, 20, 20, 20, 13.3, 20, 13.4]}, battery_soc={"f": {"bat0": 0.5}},
                ev_plugged={"f": {"ev0": [1, 1, 1, 1, 0, 1, 0]}}, ev_energy_kwh={"f": {"ev0": 8.0}})
    result = prob.solve()
    assert result.optimal
    plan = result.setpoints["f"]
    b = plan["bat0"]
    soc = np.concatenate([[0.5], b["soc"]])
    dt = np.array(HOURS)
    np.testing.assert_allclose(np.diff(soc), (0.92 * b["charge_kw"] - b["discharge_kw"] / 0.9) * dt / 400.0, rtol=0, atol=1e-9)
    assert b["discharge_kw"][4] > 1.0 and b["charge_kw"][:4].sum() > 1.0  # it carries energy across the change
    ev_kw = plan["ev0"]["p_kw"]  # (kW charged)
    assert np.sum(ev_kw * dt) == pytest.approx(8.0, abs=1e-6) and result.slacks["ev_unmet_kwh"] == pytest.approx(0.0, abs=1e-9)
    assert ev_kw[5] > 0.5  # 8 kWh in these 5 periods of 7.2 kW needs the hourly one: 4 x 0.25 x 7.2 = 7.2 kWh is short
    shift = plan["fl0"]["shift_kw"]
    assert np.sum(shift * dt) == pytest.approx(0.0, abs=1e-9)
    assert np.abs(shift).max() > 1.0  # it does move load
    throughput_kwh = np.sum((b["charge_kw"] + b["discharge_kw"]) * dt)
    assert result.terms["battery_degradation"] == pytest.approx(10.0 / 1000.0 * throughput_kwh, rel=1e-9)
    mw = result.dispatch_mw["ext_grid:0"]
    assert result.terms["generation"] == pytest.approx(10.0 * np.sum(mw * dt), rel=1e-9)


def test_bad_resolutions_are_refused_in_one_line():
    cases = {
        "resolution[1].period: 45min does not divide the 2h from 1h to 3h":
            [{"period": "15min", "until": "1h"}, {"period": "45min", "until": "3h"}],
        "resolution[0].until: 10min leaves less than one period of 15min after 0s": [{"period": "15min", "until": "10min"}],
        "resolution[0].until: 2h is not the horizon (3h)": [{"period": "15min", "until": "2h"}],
        "resolution[1].period: 20min is not a whole number of intervals of 15min":
            [{"period": "15min", "until": "1h"}, {"period": "20min", "until": "3h"}],
        "resolution[0].period: the first periods must be one interval (15min) long":
            [{"period": "30min", "until": "3h"}],
    }
    for message, resolution in cases.items():
        with pytest.raises(ScenarioError) as err:
            load_scenario(PV_CENTRALIZED, {"coordination.resolution": resolution})
        text = str(err.value)
        assert f"coordination: {message}" in text and "\n" not in text, text


@pytest.fixture(scope="module")
def horizons():
    """pv_centralized (3 h ahead at 15 minutes) as given, with the same horizon spelled as one
    stretch of 15-minute periods, and with hourly periods after the first hour."""
    from coordination.receding_horizon import Measurements, RecedingHorizon
    from tandem.study import resolve_scenario

    out = {}
    for name, resolution in (("uniform", None), ("spelled", [{"period": "15min", "until": "3h"}]),
                             ("multi", [{"period": "15min", "until": "1h"}, {"period": "1h", "until": "3h"}])):
        overrides = {"time.duration": "2h"} | ({"coordination.resolution": resolution} if resolution else {})
        scenario, _ = resolve_scenario(load_scenario(PV_CENTRALIZED, overrides))
        rh = RecedingHorizon(scenario)
        measured = Measurements({n: np.array([u.soc for u in m.fleet.batteries]) for n, m in rh.models.items()},
                                {n: 1.0 for n in rh.labels}, node_vm={n: m.node_voltages() for n, m in rh.models.items()})
        out[name] = (rh, rh.plan(1, measured))
    return out


def test_a_uniform_resolution_is_the_uniform_horizon(horizons):
    (a, plan_a), (b, plan_b) = horizons["uniform"], horizons["spelled"]
    assert a.H == b.H == 12 and b.problem.options.period_hours is None
    assert plan_a.result.objective == plan_b.result.objective
    for feeder, units in plan_a.result.setpoints.items():
        for unit, values in units.items():
            for key, v in values.items():
                assert np.array_equal(v, plan_b.result.setpoints[feeder][unit][key]), (feeder, unit, key)


def test_coarse_periods_see_the_mean_of_their_steps(horizons):
    """Four 15-minute periods then two hourly ones: the PV available in an hourly period is
    the mean over its twelve 5-minute steps; the plan's SOC follows each period's hours."""
    rh, plan = horizons["multi"]
    assert rh.H == 6 and rh.problem.options.durations() == (0.25, 0.25, 0.25, 0.25, 1.0, 1.0)
    assert not plan.failed
    fleet = rh.models["f13"].fleet
    sun = rh.forecast(fleet.irradiance_kw_m2, 1)
    steps = forecasts.perfect(fleet.irradiance_kw_m2, 0, 36)  # the 5-minute steps from step 1 (held past the run's end)
    np.testing.assert_allclose(sun, [*steps[:12].reshape(4, 3).mean(axis=1), steps[12:24].mean(), steps[24:36].mean()],
                               rtol=1e-12)
    unit = rh.setups["f13"].ders.of(BY_NAME["battery"])[0]
    b = plan.result.setpoints["f13"][unit.name]
    soc = np.concatenate([[unit.soc_initial], b["soc"]])
    dt = np.array(rh.problem.options.durations())
    np.testing.assert_allclose(np.diff(soc), (unit.eta_charge * b["charge_kw"] - b["discharge_kw"] / unit.eta_discharge)
                               * dt / unit.kwh_rated, rtol=0, atol=1e-9)
