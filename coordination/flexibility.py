"""Feasible P-Q regions at a feeder's interface, by optimising in many directions.

A direction d = (cos a, sin a) in the (P, Q) plane of the feeder head (kW, kvar of one
copy) is pushed as far as the feeder allows: maximise d . (P_t, Q_t) subject to the DSO's
whole model (LinDist3Flow, DER limits, SOC dynamics) with the use of every soft limit held
at what the DSO's own optimum needs (zero when its network is within limits). The optimum
in direction a is a point of the region (a support point); with K directions:

* the convex hull of the support points is an inner approximation (every point of it is
  a convex combination of feasible operating points, hence feasible: the region is
  the projection of a polyhedron, so convex);
* the half-planes d_k . x <= h_k (h_k the optimum) an outer one (no feasible point lies
  outside any of them).

`region_at` gives the exact region of one period of the horizon (the other periods
adapt: the projection of the multi-period feasible set). `robust_regions` gives one
region per period that hold jointly, as a DSO reporting its flexibility to the TSO for
every period at once must: the intertemporal constraints are replaced by bands on each
unit's power around the DSO's own plan, narrow enough that any choice within the bands,
period by period, keeps every battery's SOC within limits and delivers every EV's energy
(`robust_bands`). Any sequence of targets with each period's target in that period's
inner region is then met by the DSO (`dso_managed`).

When the DSO's own optimum already uses a soft limit (a voltage out of the band that no DER
can bring back, a branch over its rating, a battery ending short of its target), no operating
point keeps every limit, and the region is that of the points violating no more than the
own optimum does: the own optimum is the minimum-violation point (the penalties dwarf the
DSO's other costs) and the region shrinks to it, or nearly. `Region.violation` holds what the
own optimum uses and `Region.within_limits` says whether it is nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coordination.dso import NO_CAP, FeederProblem

DIRECTION_WEIGHT = 1e3  # currency per kW in the direction: dwarfs the DSO's own costs, which only break ties
VOLTAGE_TOLERANCE = 1e-7  # pu^2 per period of voltage-slack use above the reference's
FLOW_TOLERANCE = 1e-4  # kVA per period
ENERGY_TOLERANCE = 1e-4  # kWh of SOC or EV shortfall
LIMIT_TOLERANCES = {"voltage_pu2": VOLTAGE_TOLERANCE, "flow_kva": FLOW_TOLERANCE, "soc_kwh": ENERGY_TOLERANCE,
                    "ev_kwh": ENERGY_TOLERANCE}


def directions(n: int) -> np.ndarray:
    """n unit vectors (cos a, sin a), a = 2 pi k / n: with n a multiple of 4 the +-P and +-Q
    directions are among them."""
    if n < 3:
        raise ValueError(f"a region needs at least 3 directions (got {n})")
    angles = 2 * math.pi * np.arange(n) / n
    return np.column_stack([np.cos(angles), np.sin(angles)])


@dataclass
class Region:
    """The P-Q region of one period at a feeder's interface (kW, kvar; one copy)."""

    period: int
    directions: np.ndarray  # [K, 2]
    support: np.ndarray  # [K] the largest d_k . (P, Q) in the region
    points: np.ndarray  # [K, 2] a point attaining each support value
    costs: np.ndarray  # [K] the DSO's cost at each point
    reference: np.ndarray  # [2] the DSO's own optimum (P, Q)
    reference_cost: float
    # Soft-limit use of the own optimum: "voltage_pu2" (pu^2 outside the band, summed over nodes
    # and phases) and "flow_kva" (above branch ratings, summed over branch phases) in the period;
    # "soc_kwh" and "ev_kwh" (battery SOC and EV energy shortfalls) over the horizon.
    violation: dict[str, float] = field(default_factory=dict)

    @property
    def within_limits(self) -> bool:
        """Whether the own optimum (and so some operating point) keeps every limit."""
        return all(self.violation.get(name, 0.0) <= tol for name, tol in LIMIT_TOLERANCES.items())

    def limits_note(self) -> str:
        """"" within limits; else one sentence naming what the least-violating point exceeds."""
        if self.within_limits:
            return ""
        what = {"voltage_pu2": "the voltage band by {:.4g} pu^2 (summed over nodes)",
                "flow_kva": "branch ratings by {:.4g} kVA (summed over branch phases)",
                "soc_kwh": "battery SOC targets by {:.4g} kWh", "ev_kwh": "EV energy by {:.4g} kWh"}
        parts = [text.format(self.violation[name]) for name, text in what.items()
                 if self.violation.get(name, 0.0) > LIMIT_TOLERANCES[name]]
        return ("no operating point within limits: the least the feeder can do misses " + ", ".join(parts)
                + f"; shown is the minimum-violation point (least penalty-weighted violation, {self.reference[0]:.1f} kW, {self.reference[1]:.1f} kvar)"
                + (" and the points violating no more" if self.area() > 1.0 else ""))

    def vertices(self) -> np.ndarray:
        """Corners of the inner polygon (the hull of the support points and the reference),
        counter-clockwise."""
        return convex_hull(np.vstack([self.points, self.reference]))

    def contains(self, p_kw: float, q_kvar: float, tol: float = 1e-6, inner: bool = False) -> bool:
        """Whether (P, Q) lies in the outer polygon (any feasible point does) or, with
        `inner`, in the inner one (any point there is feasible); `tol` in kW."""
        x = np.array([p_kw, q_kvar])
        if not inner:
            return bool(np.all(self.directions @ x <= self.support + tol))
        hull = self.vertices()
        if len(hull) < 3:  # a point or a segment
            return _distance_to_hull(x, hull) <= tol
        edges = np.roll(hull, -1, axis=0) - hull
        rel = x - hull
        lengths = np.maximum(np.hypot(edges[:, 0], edges[:, 1]), 1e-12)
        return bool(np.all((edges[:, 0] * rel[:, 1] - edges[:, 1] * rel[:, 0]) / lengths >= -tol))

    def area(self, inner: bool = True) -> float:
        """Area (kW kvar) of the inner polygon, or of the outer one."""
        hull = self.vertices() if inner else _outer_vertices(self.directions, self.support)
        if len(hull) < 3:
            return 0.0
        x, y = hull[:, 0], hull[:, 1]
        return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    def p_range(self) -> tuple[float, float]:
        """Smallest and largest head P in the inner polygon."""
        v = self.vertices()
        return float(v[:, 0].min()), float(v[:, 0].max())


def convex_hull(points: np.ndarray, resolution: float = 1e-3) -> np.ndarray:
    """Corners of the convex hull of 2-D points, counter-clockwise (monotone chain); points
    closer than `resolution` (kW) merge, and corners within it of a straight edge drop."""
    pts = np.unique(np.round(np.asarray(points, dtype=float) / resolution) * resolution, axis=0)
    if len(pts) <= 2:
        return pts
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    tol = resolution * float(np.ptp(pts, axis=0).max())  # |cross| = edge length x distance off the edge

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= tol:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= tol:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def _distance_to_hull(x: np.ndarray, hull: np.ndarray) -> float:
    if len(hull) == 1:
        return float(np.hypot(*(x - hull[0])))
    a, b = hull[0], hull[-1]
    ab = b - a
    s = np.clip(np.dot(x - a, ab) / max(np.dot(ab, ab), 1e-18), 0.0, 1.0)
    return float(np.hypot(*(x - a - s * ab)))


def _outer_vertices(dirs: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Corners of the polygon d_k . x <= h_k (consecutive directions' lines intersected)."""
    out = []
    n = len(dirs)
    for k in range(n):
        a = np.array([dirs[k], dirs[(k + 1) % n]])
        if abs(np.linalg.det(a)) > 1e-12:
            out.append(np.linalg.solve(a, [support[k], support[(k + 1) % n]]))
    return convex_hull(np.array(out)) if out else np.zeros((0, 2))


def _caps_from(problem: FeederProblem) -> tuple[dict[str, object], dict[str, object]]:
    """Caps on the use of every soft limit at what the last solution used (plus tolerances),
    and that use (per period for voltage and flow)."""
    volt, flow = problem.period_violations()
    caps = {"cap_voltage": volt + VOLTAGE_TOLERANCE, "cap_flow": flow + FLOW_TOLERANCE}
    used = {"voltage_pu2": volt, "flow_kva": flow}
    if not problem.flags["robust"]:
        soc, ev = problem.horizon_shortfalls()
        caps.update(cap_soc=soc + ENERGY_TOLERANCE, cap_ev=ev + ENERGY_TOLERANCE)
        used.update(soc_kwh=soc, ev_kwh=ev)
    return caps, used


def _in_period(used: dict[str, object], period: int) -> dict[str, float]:
    return {name: float(np.asarray(value)[period]) if np.ndim(value) else float(value) for name, value in used.items()}


def _release(problem: FeederProblem) -> None:
    H = len(problem.model.T)
    params = {"dir_p": np.zeros(H), "dir_q": np.zeros(H), "cap_voltage": NO_CAP, "cap_flow": NO_CAP}
    if not problem.flags["robust"]:
        params.update(cap_soc=NO_CAP, cap_ev=NO_CAP)
    problem.set_params(**params)


def region_at(problem: FeederProblem, period: int, n_directions: int = 16) -> Region:
    """The exact P-Q region of one period (see the module docstring) with the data in
    `problem` now (a FeederProblem built with `directions=True`, not robust)."""
    if not problem.flags["directions"] or problem.flags["robust"]:
        raise ValueError("region_at needs a FeederProblem built with directions=True and robust=False")
    H = len(problem.model.T)
    if not 0 <= period < H:
        raise ValueError(f"period {period} is outside the horizon 0..{H - 1}")
    _release(problem)
    ref = problem.solve(full=False)
    if not ref.optimal:
        raise RuntimeError(f"feeder {problem.setup.data.name}: own optimum {ref.status}")
    caps, used = _caps_from(problem)
    problem.set_params(**caps)
    dirs = directions(n_directions)
    points, costs = np.zeros((n_directions, 2)), np.zeros(n_directions)
    try:
        for k, (dp, dq) in enumerate(dirs):
            weights_p, weights_q = np.zeros(H), np.zeros(H)
            weights_p[period], weights_q[period] = DIRECTION_WEIGHT * dp, DIRECTION_WEIGHT * dq
            problem.set_params(dir_p=weights_p, dir_q=weights_q)
            out = problem.solve(full=False, changed="all" if k == 0 else "objective")  # the caps are new at k = 0
            if not out.optimal:
                raise RuntimeError(f"feeder {problem.setup.data.name}: direction {k} {out.status}")
            points[k] = out.p_kw[period], out.q_kvar[period]
            costs[k] = out.cost
    finally:
        _release(problem)
    return Region(period, dirs, np.einsum("kj,kj->k", dirs, points), points, costs,
                  np.array([ref.p_kw[period], ref.q_kvar[period]]), ref.cost, _in_period(used, period))


def robust_bands(problem: FeederProblem, unit_p_kw: Mapping[str, np.ndarray],
                 soc: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-period power bands (kW injected, [lo, hi] per unit "kind/name") around a plan
    (`unit_p_kw`, each battery's SOC trajectory `soc`) within which every period may pick
    any value independently, each unit's by its kind (`DerKind.band`): batteries keep their
    SOC within limits, EV chargers charge at least the plan, flexible loads and gensets with
    ramps or commitment keep the plan. Kinds without coupling over time (PV) have none."""
    dt = problem.options.dt_hours
    lo: dict[str, np.ndarray] = {}
    hi: dict[str, np.ndarray] = {}
    for kind, name, d in problem.units:
        if not kind.banded:
            continue
        key = f"{kind.name}/{name}"
        lo[key], hi[key] = kind.band(d, d.unit, np.asarray(unit_p_kw[key], dtype=float), dt, soc.get(name))
    return lo, hi


def robust_regions(problem: FeederProblem, bands: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
                   caps: Mapping[str, np.ndarray], n_directions: int = 16) -> list[Region]:
    """One region per period that hold jointly (see the module docstring): `problem` is a
    FeederProblem built with directions=True and robust=True holding the data now, `bands`
    from `robust_bands`, `caps` the per-period slack use allowed ({"cap_voltage": [H],
    "cap_flow": [H]}). Every direction is one solve for all periods at once (the periods
    are independent once the bands replace the intertemporal constraints). Costs are
    per period."""
    if not (problem.flags["directions"] and problem.flags["robust"]):
        raise ValueError("robust_regions needs a FeederProblem built with directions=True and robust=True")
    H = len(problem.model.T)
    lo, hi = bands
    problem.set_params(band_lo=lo, band_hi=hi)
    _release(problem)
    problem.set_params(cap_voltage=caps["cap_voltage"], cap_flow=caps["cap_flow"])
    dirs = directions(n_directions)
    points = np.zeros((H, n_directions, 2))
    costs = np.zeros((H, n_directions))
    try:
        ref = problem.solve(full=False)
        if not ref.optimal:
            raise RuntimeError(f"feeder {problem.setup.data.name}: robust own optimum {ref.status}")
        ref_points = np.column_stack([ref.p_kw, ref.q_kvar])
        ref_costs = problem.period_costs()
        _, used = _caps_from(problem)
        for k, (dp, dq) in enumerate(dirs):
            problem.set_params(dir_p=np.full(H, DIRECTION_WEIGHT * dp), dir_q=np.full(H, DIRECTION_WEIGHT * dq))
            out = problem.solve(full=False, changed="objective")
            if not out.optimal:
                raise RuntimeError(f"feeder {problem.setup.data.name}: direction {k} {out.status}")
            points[:, k, 0], points[:, k, 1] = out.p_kw, out.q_kvar
            costs[:, k] = problem.period_costs()
    finally:
        _release(problem)
    return [Region(t, dirs, np.einsum("kj,kj->k", dirs, points[t]), points[t], costs[t],
                   ref_points[t], float(ref_costs[t]), _in_period(used, t)) for t in range(H)]


def plot_regions(regions: Mapping[str, Region], path: str | Path, title: str = "") -> Path:
    """Draw regions (label -> Region) as filled inner polygons with their outer bounds
    dashed and each reference point marked; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, region) in enumerate(regions.items()):
        colour = colours[i % len(colours)]
        inner = region.vertices()
        if len(inner):
            closed = np.vstack([inner, inner[:1]])
            ax.fill(closed[:, 0], closed[:, 1], color=colour, alpha=0.15)
            ax.plot(closed[:, 0], closed[:, 1], color=colour, lw=1.8, label=label)
        outer = _outer_vertices(region.directions, region.support)
        if len(outer) >= 3:
            closed = np.vstack([outer, outer[:1]])
            ax.plot(closed[:, 0], closed[:, 1], color=colour, lw=0.8, ls="--")
        if region.within_limits:
            ax.plot(*region.reference, marker="o", color=colour, ms=5)
        else:  # no point keeps the limits: the own optimum is the minimum-violation point
            ax.plot(*region.reference, marker="X", color=colour, ms=10, ls="none",
                    label=f"{label}: minimum-violation point (limits not met)")
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.axvline(0.0, color="0.6", lw=0.6)
    ax.set_xlabel("head active power P (kW, + drawn from the grid)")
    ax.set_ylabel("head reactive power Q (kvar)")
    ax.set_title(title or "Feasible P-Q region at the feeder interface")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
