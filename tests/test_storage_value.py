"""The energy a run leaves in its batteries is valued (#14 item 17): its change from the
scenario's initial SOC, at the run's mean marginal price (the slack unit's marginal cost at
each step's operating point, read off the recorded bus voltages), is its own term and comes
off `tandem compare`'s total cost."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pytest

from scenario.schema import load_scenario
from tandem.compare import row
from tandem.kpis import kpis, slack_power_mw
from tests.test_coordinator import PV_CENTRALIZED
from tests.test_report import STEP_H, write_results


@lru_cache(maxsize=4)
def solved_case30(levels: tuple):
    """case30's bus voltages and slack power (pandapower's) with its loads scaled by each level."""
    import pandapower as pp

    from grid.networks import load_network

    net = load_network("case30")
    base = net.load.p_mw.to_numpy(copy=True)
    vm, va, slack = [], [], []
    for level in levels:
        net.load["p_mw"] = base * level
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False)
        vm.append(net.res_bus.vm_pu.to_numpy())
        va.append(net.res_bus.va_degree.to_numpy())
        slack.append(float(net.res_ext_grid.p_mw.iloc[0]))
    cost = net.poly_cost[net.poly_cost.et == "ext_grid"].iloc[0]
    return (np.array(vm), np.array(va), np.array(slack), [str(b) for b in net.bus.index],
            float(cost.cp1_eur_per_mw), float(cost.cp2_eur_per_mw2))


def test_slack_power_from_voltages_is_pandapowers():
    vm, va, slack, buses, _, _ = solved_case30((0.6, 1.0, 1.3))
    np.testing.assert_allclose(slack_power_mw("case30", buses, vm, va), slack, atol=1e-6)
    assert np.ptp(slack) > 20.0  # the levels do move the slack


def run_file(path, soc_end, generation_per_h, levels, multiplier=3.0):
    """Two steps of case30 with one feeder (two batteries of 100 and 300 kWh starting at 0.5)."""
    vm, va, _, buses, _, _ = solved_case30(levels)
    n = len(levels)
    soc = np.tile(np.asarray(soc_end, dtype=float), (n, 1))
    scenario = {"transmission": {"network": "case30"},
                "feeders": [{"name": "f", "battery": {"soc_initial": 0.5}}]}
    series = {
        "transmission/vm_pu": (vm, "pu", ("bus",)),
        "transmission/va_deg": (va, "deg", ("bus",)),
        "transmission/generation_cost_per_h": (np.full(n, float(generation_per_h)), "per h", ()),
        "devices/f/battery_soc": (soc, "pu", ("battery",)),
        "feeders/battery_kw": (np.zeros((n, 1)), "kW", ("feeder",)),
    }
    static = {"feeders/name": (["f"], ("feeder",)), "feeders/multiplier": ([multiplier], ("feeder",)),
              "devices/f/battery_kwh": ([100.0, 300.0], ("battery",)), "transmission/bus": (buses, ("bus",))}
    return write_results(path, series, static, scenario=scenario)


def test_stored_energy_is_valued_at_the_mean_marginal_price(tmp_path):
    levels = (0.8, 1.2)
    _, _, slack, _, c1, c2 = solved_case30(levels)
    price = float(np.mean(c1 + 2 * c2 * slack))
    hours = len(levels) * STEP_H
    # B ends 0.3 and 0.1 pu fuller in 100 and 300 kWh batteries, 3 copies: 3 x 60 kWh = 0.18 MWh,
    # and paid for it at the marginal price in its generation cost.
    stored_mwh = 3 * (0.3 * 100 + 0.1 * 300) / 1000.0
    a = kpis(run_file(tmp_path / "a.h5", [0.5, 0.5], 1000.0, levels))
    b = kpis(run_file(tmp_path / "b.h5", [0.8, 0.6], 1000.0 + price * stored_mwh / hours, levels))
    assert a["battery_energy_change_MWh"] == pytest.approx(0.0, abs=1e-12)
    assert b["battery_energy_change_MWh"] == pytest.approx(stored_mwh, rel=1e-12)
    assert b["battery_energy_change_kWh_per_copy"] == pytest.approx(60.0, rel=1e-12)
    assert b["marginal_price_mean"] == pytest.approx(price, rel=1e-9)
    assert b["storage_value"] == pytest.approx(price * stored_mwh, rel=1e-9)
    # The total cost is generation + DSO costs - the stored energy's value, so buying energy to
    # keep it at the price it cost leaves the total unchanged.
    scenario = load_scenario(PV_CENTRALIZED)
    ra, rb = row(a, scenario), row(b, scenario)
    assert rb["tso_cost"] - ra["tso_cost"] == pytest.approx(price * stored_mwh, rel=1e-9)
    assert rb["total_cost"] == pytest.approx(rb["tso_cost"] + rb["dso_cost"] - rb["storage_value"], rel=1e-12)
    assert rb["total_cost"] == pytest.approx(ra["total_cost"], rel=1e-12)
    # Ending emptier than the start counts as a cost.
    c = kpis(run_file(tmp_path / "c.h5", [0.2, 0.5], 1000.0, levels))
    assert c["storage_value"] == pytest.approx(-price * 3 * 30 / 1000.0, rel=1e-9)
    assert row(c, scenario)["total_cost"] > ra["total_cost"]
