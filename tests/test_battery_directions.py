"""Batteries' charge/discharge directions in the LP relaxation (issue #15 item 7): when the
relaxation is exact by itself (a cheaper sink than the battery's losses), and how relax-and-fix
carries the directions it had to fix from one receding-horizon solve to the next."""

from __future__ import annotations

import numpy as np
import pytest

from coordination.ders import FeederDers
from coordination.ders.battery import BatteryData
from coordination.ders.pv import PVData
from tests.test_coordination_ders import problem, snapshot_kw

ETA = 0.95


def both_kw(result, unit: str = "bat0") -> np.ndarray:
    plan = result.setpoints["f"][unit]
    return np.minimum(plan["charge_kw"], plan["discharge_kw"])


@pytest.mark.parametrize("curtailment_price, burns", [(5.0, False), (500.0, True)])
def test_relaxation_is_exact_when_curtailing_is_the_cheaper_sink(ieee13, curtailment_price, burns):
    """Must-run generation leaves 300 kW of surplus that PV could cover by curtailing. Burning
    a MWh in a battery's losses (charging and discharging at once) costs the throughput price
    x (1 + eta^2) / (1 - eta^2) = 10 x 19.5 = 195 per MWh: with curtailment at 5 per MWh the LP
    relaxation curtails and never does both (no relax-and-fix round); priced at 500 per MWh
    curtailing is dearer and the relaxation burns, which the rounds then forbid."""
    demand = snapshot_kw(ieee13)
    pv = PVData("pv0", "675", kva=900.0, pmpp_kw=800.0, q_max_kvar=0.0)
    bat = BatteryData("bat0", "671", 200.0, 400.0, soc_min=0.1, soc_max=0.95, soc_initial=0.95, soc_target=0.95,
                      reactive=False)
    from coordination.objective import Prices

    results = {}
    for mode in ("relaxed", "relax-and-fix"):
        prob = problem(ieee13, FeederDers(pv=[pv], batteries=[bat]), horizon=3, battery_binaries=mode,
                       voltage_dependent_loads=False, prices=Prices(curtailment=curtailment_price),
                       net={"own_load_mw": 10.0, "p_min_mw": 10.0 + (demand - 500.0) / 1000})
        prob.update(pv_available_kw={"f": {"pv0": 800.0}})
        results[mode] = prob.solve()
        assert results[mode].optimal
    relaxed, fixed = results["relaxed"], results["relax-and-fix"]
    assert (both_kw(relaxed) > 1.0).any() == burns
    assert fixed.direction_rounds > 0 if burns else fixed.direction_rounds == 0
    assert np.all(both_kw(fixed) <= 1e-6)
    assert fixed.slacks["spilled_mwh"] == pytest.approx(0.0, abs=1e-9)
    curtailed = fixed.terms["curtailment"] / curtailment_price * 1000.0  # kWh
    if not burns:
        assert curtailed == pytest.approx(3 * 300.0, rel=1e-6)  # the whole surplus, every period
    else:  # dearer curtailing: never more (the battery may also burn some over time, discharging then charging back)
        assert curtailed <= 3 * 300.0 * (1 + 1e-9)


def test_directions_carry_into_the_next_solve(ieee13):
    """The must-run surplus of `test_no_simultaneous_charge_and_discharge` (the battery full,
    nothing to curtail: the LP burns in every period). Relax-and-fix needs a second LP on the
    first solve; after `advance(1)` the next solve starts with those directions fixed, needs
    only for the new last period, never does both, and is no worse than a solve starting
    free, and no better than the MIP."""
    demand = snapshot_kw(ieee13)
    net = {"own_load_mw": 10.0, "p_min_mw": 10.0 + demand / 1000 + 0.04}
    bat = BatteryData("bat0", "671", 500.0, 1000.0, soc_min=0.1, soc_max=0.95, soc_initial=0.95, soc_target=0.95,
                      reactive=False)

    def fresh(mode="relax-and-fix", soc=0.95):
        prob = problem(ieee13, FeederDers(batteries=[bat]), horizon=4, battery_binaries=mode, net=net,
                       voltage_dependent_loads=False)
        prob.update(battery_soc={"f": {"bat0": soc}})
        return prob

    prob = fresh()
    first = prob.solve()
    assert first.optimal and first.direction_rounds >= 1 and np.all(both_kw(first) <= 1e-6)
    # The battery follows the first period; the next plan starts an interval later.
    soc = float(first.setpoints["f"]["bat0"]["soc"][0])
    prob.advance(1)
    prob.update(battery_soc={"f": {"bat0": soc}})
    again = prob.solve()
    assert again.optimal and prob.directions.carried == 3  # periods 1..3 moved to 0..2; period 3 was free
    assert np.all(both_kw(again) <= 1e-6)
    assert again.direction_rounds == 1  # only the new last period was left to fix
    reference, mip = fresh(soc=soc).solve(), fresh("mip", soc).solve()
    assert reference.direction_rounds >= 1
    assert mip.objective * (1 - 1e-9) <= again.objective <= reference.objective * (1 + 1e-9)
    assert again.lp_bound is None  # a first LP with fixed directions bounds nothing
    # Directions fixed in HiGHS only for the solve: the pyomo bounds are untouched, and a
    # solve that is not advanced starts free again.
    assert all(v.lb == 0 and v.ub == 1 for v in prob.model.feeders["f"].battery["bat0"].u.values())
    third = prob.solve()
    assert prob.directions.carried == 0 and third.direction_rounds >= 1 and np.all(both_kw(third) <= 1e-6)
