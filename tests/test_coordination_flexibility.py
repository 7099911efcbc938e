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
