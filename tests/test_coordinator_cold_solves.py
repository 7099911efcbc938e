"""Cold solves by interior point, warm re-solves by the simplex (issue #15 item 6)."""

from __future__ import annotations

import copy

import pytest

from coordination.ders import FeederDers
from coordination.ders.battery import BatteryData
from coordination.ders.pv import PVData
from tests.test_coordination_ders import problem


def iterations(prob) -> tuple[int, int]:
    info = prob.solver.highs.getInfo()
    return info.ipm_iteration_count, info.simplex_iteration_count


def test_cold_solves_by_interior_point_then_warm_by_simplex(ieee13):
    """The first solve of a model (and the first after coefficients changed) runs ipx when
    `cold_solver` is "ipm"; re-solves with new data run the simplex from the basis crossover
    left. Both solvers reach the same optimum at every solve."""
    ders = FeederDers(pv=[PVData("pv0", "675", kva=500.0, pmpp_kw=450.0)],
                      batteries=[BatteryData("bat0", "671", 200.0, 400.0)])
    tapped = copy.deepcopy(ieee13)
    regulator = next(br for br in tapped.branches if br.kind == "regulator")
    regulator.ratio = [r + 0.00625 for r in regulator.ratio]  # a tap up
    objectives = {}
    for cold in ("simplex", "ipm"):
        prob = problem(ieee13, ders, horizon=6, cold_solver=cold, net={"own_load_mw": 10.0})
        prob.update(pv_available_kw={"f": {"pv0": [0, 100, 300, 450, 300, 100]}})
        first = prob.solve()
        ipm_first, _ = iterations(prob)
        prob.update(pv_available_kw={"f": {"pv0": [100, 300, 450, 300, 100, 0]}}, battery_soc={"f": {"bat0": 0.6}})
        warm = prob.solve()
        ipm_warm, simplex_warm = iterations(prob)
        prob.update(ratios={"f": tapped})  # coefficients rewritten: the next solve is cold
        again = prob.solve()
        ipm_again, _ = iterations(prob)
        assert first.optimal and warm.optimal and again.optimal
        assert (ipm_first > 0) == (cold == "ipm") and (ipm_again > 0) == (cold == "ipm")
        assert ipm_warm == 0
        objectives[cold] = (first.objective, warm.objective, again.objective)
    assert objectives["ipm"] == pytest.approx(objectives["simplex"], rel=1e-7)
    # "auto" (the default) keeps small LPs like this one on the simplex.
    prob = problem(ieee13, ders, horizon=6)
    assert prob.solver.cold_solver == "auto" and prob.solve().optimal and iterations(prob)[0] == 0


def test_unknown_cold_solver_is_refused(ieee13):
    with pytest.raises(ValueError, match="cold_solver must be one of auto, simplex, ipm"):
        problem(ieee13, FeederDers(), horizon=2, cold_solver="pdlp")
