"""P-Q regions: polygon geometry by hand, and regions of the IEEE 13-node feeder with DERs."""

from __future__ import annotations

import numpy as np
import pytest

from coordination.dso import FeederProblem
from coordination.flexibility import Region, convex_hull, directions, region_at, robust_bands, robust_regions
from tests.test_coordination_schemes import H, case_data, feeders, options


def square_region() -> Region:
    """The square |P| <= 1, |Q| <= 1 as 8 directions would find it."""
    dirs = directions(8)
    points = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=float)
    points[0], points[2], points[4], points[6] = [1, 1], [-1, 1], [-1, -1], [1, -1]  # ties: a corner each
    support = np.einsum("kj,kj->k", dirs, points)
    return Region(0, dirs, support, points, np.zeros(8), np.zeros(2), 0.0)


def test_polygon_geometry():
    region = square_region()
    hull = region.vertices()
    assert len(hull) == 4
    assert region.area() == pytest.approx(4.0)
    assert region.area(inner=False) == pytest.approx(4.0)
    assert region.contains(0.5, -0.5, inner=True) and region.contains(1.0, 1.0, inner=True)
    assert not region.contains(1.1, 0.0, inner=True) and not region.contains(1.1, 0.0)
    assert region.p_range() == (-1.0, 1.0)
    # Collinear and repeated points drop out of the hull; order is counter-clockwise.
    hull = convex_hull(np.array([[0, 0], [1, 0], [2, 0], [2, 2], [0, 2], [0, 2], [1, 1]], dtype=float))
    assert hull.tolist() == [[0, 0], [2, 0], [2, 2], [0, 2]]
    with pytest.raises(ValueError, match="at least 3"):
        directions(2)


def test_robust_regions_lie_inside_the_exact_ones(ieee13):  # noqa: F811
    """Regions that hold jointly give up flexibility (batteries keep to bands around the DSO's
    plan) but never claim more than the feeder can do in that period."""
    setup = feeders(ieee13)["a"]
    data = {key: values["a"] for key, values in case_data(ieee13).items() if "a" in values}
    exact = FeederProblem(setup, options(), directions=True)
    exact.update(**data)
    plan = FeederProblem(setup, options())
    plan.update(**data)
    assert plan.solve().optimal
    robust = FeederProblem(setup, options(), directions=True, robust=True)
    robust.update(**data)
    lo, hi = robust_bands(robust, plan.unit_power(), plan.battery_soc())
    # Battery bands keep the plan and, spread over six hours, are a fraction of the rating.
    for key in ("battery/bat0", "battery/bat1"):
        assert np.all(lo[key] <= plan.unit_power()[key] + 1e-9) and np.all(hi[key] >= plan.unit_power()[key] - 1e-9)
        assert np.all(hi[key] - lo[key] < 0.5 * 2 * (500.0 if key.endswith("0") else 200.0))
    volt, flow = plan.period_violations()
    regions = robust_regions(robust, (lo, hi), {"cap_voltage": volt + 1e-7, "cap_flow": flow + 1e-4}, 16)
    assert len(regions) == H
    for t in (0, 2, 4):
        outer = region_at(exact, t, 16)
        for p, q in regions[t].vertices():
            assert outer.contains(p, q, tol=1e-3)
        assert regions[t].area() <= outer.area() + 1e-6
    with pytest.raises(ValueError, match="robust=True"):
        robust_regions(exact, (lo, hi), {"cap_voltage": volt, "cap_flow": flow})
    with pytest.raises(ValueError, match="outside the horizon"):
        region_at(exact, H, 8)


def pv_only_feeder(ieee13, penalties=None):
    """IEEE 13 with one 600 kVA PV inverter at 675 (no sun: reactive power only), one period,
    no branch-flow limits: its region is a segment of Q at the loads' P."""
    from coordination.centralized import FeederSetup, Options
    from coordination.ders import FeederDers
    from coordination.ders.pv import PVData
    from coordination.objective import Penalties

    setup = FeederSetup(ieee13, bus=0, ders=FeederDers(pv=[PVData("pv0", "675", 600.0, 500.0)]))
    opts = Options(horizon=1, feeder_flow_limits=False, penalties=penalties or Penalties())
    return FeederProblem(setup, opts, directions=True)


def solve_at(problem, level: float, head: float):
    problem.update(load_levels=np.full((len(problem.setup.data.loads), 1), level), head_voltage=head,
                   pv_available_kw={"pv0": 0.0})
    return problem


def test_region_says_when_no_point_keeps_the_limits(ieee13):  # noqa: F811
    """#14 item 18: when the feeder's own optimum already misses a voltage limit, the region is
    its minimum-violation point, and the Region says so with the violation it measured."""
    from coordination.objective import Penalties

    problem = pv_only_feeder(ieee13)
    light = region_at(solve_at(problem, 0.5, 0.97), 0, 8)
    assert light.within_limits and light.limits_note() == ""
    assert light.violation["voltage_pu2"] == pytest.approx(0.0, abs=1e-7)
    assert np.ptp(light.vertices()[:, 1]) > 500.0  # kvar: the inverter's Q moves the head's
    heavy = region_at(solve_at(problem, 1.0, 0.94), 0, 8)  # the head already below 0.95 pu
    assert not heavy.within_limits
    assert np.ptp(heavy.vertices(), axis=0).max() < 1.0  # a point, not a region
    note = heavy.limits_note()
    assert note.startswith("no operating point within limits") and "minimum-violation point" in note
    assert "voltage band" in note and "battery" not in note
    # The violation is what the voltages of the own optimum give: sum over nodes of the squared
    # voltage below 0.95^2 or above 1.05^2 (the model's slacks are on v^2).
    problem.set_params(dir_p=np.zeros(1), dir_q=np.zeros(1))
    own = problem.solve(full=True)
    nodes = set(problem.model.feeder.limited_nodes)
    w = np.array([v[0] ** 2 for node, v in own.voltages.items() if node in nodes])
    by_hand = float(np.sum(np.clip(0.95 ** 2 - w, 0, None) + np.clip(w - 1.05 ** 2, 0, None)))
    assert by_hand > 1e-3
    assert heavy.violation["voltage_pu2"] == pytest.approx(by_hand, rel=1e-6)
    # It is the least violation the feeder allows: with voltage penalties 100 times higher the own
    # optimum violates no less.
    stricter = region_at(solve_at(pv_only_feeder(ieee13, Penalties(voltage=1e7)), 1.0, 0.94), 0, 4)
    assert stricter.violation["voltage_pu2"] == pytest.approx(heavy.violation["voltage_pu2"], rel=1e-6)
    assert stricter.reference == pytest.approx(heavy.reference, abs=1e-3)
