"""`tandem compare` shows economic costs and penalties apart, and each scheme's gap to the
centralized scheme on both (#14 item 16); the realised violations it prices are measured as the
coordinator's penalties measure them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenario.schema import load_scenario
from tandem.compare import row, table
from tandem.kpis import kpis
from tests.test_coordinator import PV_CENTRALIZED
from tests.test_report import STEP_H, write_results


def test_realised_violations_by_hand(tmp_path):
    import pandapower.networks as pn

    # Feeder "fa" (2 copies): node 1 at 1.06 pu and node 2 at 0.94 pu in both steps, node 3 inside.
    volts = np.array([[1.06, 0.94, 1.0], [1.06, 0.94, 1.0]])
    loading = np.array([[120.0, 50.0], [90.0, 150.0]])  # % of line:0 and line:1 of case30
    series = {"feeders/node_vm_pu/fa": (volts, "pu", ("node",)),
              "transmission/loading_percent": (loading, "%", ("branch",))}
    static = {"feeders/name": (["fa"], ("feeder",)), "feeders/multiplier": ([2.0], ("feeder",)),
              "transmission/branch": (["line:0", "line:1"], ("branch",))}
    k = kpis(write_results(tmp_path / "v.h5", series, static, scenario={"transmission": {"network": "case30"}}))
    per_step = (1.06 ** 2 - 1.05 ** 2) + (0.95 ** 2 - 0.94 ** 2)  # pu^2 on v^2, as the model's slacks
    assert k["voltage_violation_pu2h"] == pytest.approx(2 * 2 * per_step * STEP_H, rel=1e-12)
    net = pn.case30()
    rating = [float(net.line.max_i_ka[i] * math.sqrt(3) * net.bus.vn_kv[net.line.from_bus[i]]) for i in (0, 1)]
    assert k["transmission_overload_MVAh"] == pytest.approx((0.2 * rating[0] + 0.5 * rating[1]) * STEP_H, rel=1e-9)


def test_compare_separates_economics_from_penalties_with_gaps():
    scenario = load_scenario(PV_CENTRALIZED)
    base = {"steps": 12.0, "generation_cost": 1000.0, "pv_curtailment_MWh": 2.0, "battery_throughput_MWh": 10.0,
            "voltage_violation_pu2h": 0.0, "transmission_overload_MVAh": 0.0, "ev_owed_at_end_MWh": 0.0,
            "coordinator_cost_generation_sum": 900.0, "coordinator_cost_penalty_voltage_sum": 100.0}
    other = {**base, "generation_cost": 1100.0, "voltage_violation_pu2h": 0.002, "transmission_overload_MVAh": 0.5,
             "ev_owed_at_end_MWh": 0.1, "coordinator_cost_penalty_voltage_sum": 2100.0}
    frame = table({"centralized": row(base, scenario), "admm": row(other, scenario)})
    c, a = frame["centralized"], frame["admm"]
    # Economic: generation + curtailment (5/MWh) + battery wear (1/MWh here); no penalty in it.
    assert c["total_cost"] == pytest.approx(1000.0 + 5.0 * 2 + 1.0 * 10)
    assert a["total_cost"] == pytest.approx(1100.0 + 5.0 * 2 + 1.0 * 10)
    # Penalties at the coordinator's prices: 100,000 per pu^2 h, 5,000 per MVAh, 1,000 per MWh owed.
    assert c["penalty_cost"] == 0.0
    assert a["penalty_cost"] == pytest.approx(1e5 * 0.002 + 5e3 * 0.5 + 1e3 * 0.1)
    assert a["economic_gap_pct [%]"] == pytest.approx(100.0 * 100.0 / 1020.0)
    assert a["penalty_gap"] == pytest.approx(a["penalty_cost"] - c["penalty_cost"])
    assert c["economic_gap_pct [%]"] == 0.0 and c["penalty_gap"] == 0.0
    assert c["plan_penalty_share_pct [%]"] == pytest.approx(10.0) and a["plan_penalty_share_pct [%]"] == pytest.approx(70.0)
    # Without the centralized scheme there is nothing to measure a gap against.
    alone = table({"admm": row(other, scenario)})
    assert math.isnan(alone.at["economic_gap_pct [%]", "admm"]) and math.isnan(alone.at["penalty_gap", "admm"])
    # A run that recorded nothing has no penalty cost to show (not a cost of 0).
    assert math.isnan(row({"steps": 0.0}, scenario)["penalty_cost"])



def test_flagship_differs_from_the_stress_case_as_documented():
    """runs/pv_feasible.yaml is runs/pv_centralized.yaml with the three documented changes only."""
    from tests.conftest import ROOT

    flagship, stress = (load_scenario(ROOT / "runs" / f"{name}.yaml") for name in ("pv_feasible", "pv_centralized"))
    assert [int(f.bus) for f in flagship.feeders] == [1, 20] and [int(f.bus) for f in stress.feeders] == [6, 20]
    assert {f.load_profile for f in flagship.feeders} == {"residential"}
    assert flagship.feeders[0].pv.buses == ["671", "675", "692", "680", "633", "670"] and stress.feeders[0].pv.buses is None
    assert flagship.coordination == stress.coordination and flagship.time == stress.time
    assert [f.battery for f in flagship.feeders] == [f.battery for f in stress.feeders]
