"""What a flexibility market clears on: each system operator's (SO's) grid as a linear map
around its baseline, and the bids.

The baseline is the grid's state without flexibility on the forecasts of the market's
periods (generators at their energy-market dispatch, DERs at their schedules). Around it
every grid is linear in what bids change:
- the transmission grid (DC): line flows change by PTDF x injection changes, the
  injections balance (lossless); a DSO's extra import is a load change at its boundary bus;
- a distribution grid (LinDist3Flow, `coordination.feeder_response`): squared node voltages
  and the head power change by the map's sensitivities to injections at the bid's point.
A market model (`coordination.market.clearing`) is a choice of which bids, which grids'
limits and which interfaces each layer sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from coordination.ders import parse_connection
from coordination.feeder_response import feeder_response
from coordination.market.bids import Bid, check_bids
from coordination.network_data import FeederData, TransmissionData

TSO = "tso"


@dataclass
class TransmissionGrid:
    """The TSO's grid: injection points are buses (positions in `buses`)."""

    buses: list[int]  # pandapower bus indices
    lines: list[str]
    ptdf: np.ndarray  # [line, bus] MW of flow per MW injected at the bus (taken at the slack)
    base_flow_mw: np.ndarray  # [line, period]
    rating_mw: np.ndarray  # [line]; inf where unlimited
    boundary: dict[str, int]  # DSO -> position of its boundary bus


@dataclass
class DistributionGrid:
    """A DSO's grid (one feeder, standing for `multiplier` identical copies): injection points
    are buses with the phases a resource spreads over; rows are squared node voltages."""

    points: list[str]  # "bus.1.2.3"
    rows: list[tuple[str, int]]  # monitored (bus, phase)
    w_sens: np.ndarray  # [row, point] pu^2 per MW injected at the point (one copy)
    head_sens: np.ndarray  # [point] MW more drawn at the head per MW injected (about -1: losses are not modelled)
    base_w: np.ndarray  # [row, period]
    v_min: float = 0.95
    v_max: float = 1.05
    multiplier: float = 1.0


@dataclass
class MarketCase:
    tso: TransmissionGrid
    dsos: dict[str, DistributionGrid]
    bids: list[Bid]
    hours: np.ndarray  # [period] length of each period
    # Soft limits, so every layer has a solution and what it leaves is measured: currency per
    # MWh of line overload and per pu^2-hour of squared-voltage violation.
    overload_price: float = 1e4
    voltage_price: float = 1e6
    names: dict[str, str] = field(default_factory=dict)  # SO -> what the user calls it

    def __post_init__(self):
        unknown = set(self.tso.boundary) ^ set(self.dsos)
        if unknown:
            raise ValueError(f"DSOs without a boundary bus or grid: {', '.join(sorted(unknown))}")
        sizes = {TSO: len(self.tso.buses), **{d: len(g.points) for d, g in self.dsos.items()}}
        check_bids(self.bids, sizes, len(self.hours))

    @property
    def periods(self) -> int:
        return len(self.hours)

    @property
    def sos(self) -> list[str]:
        return [TSO, *self.dsos]


# ------------------------------------------------------------------------------------------
# From the project's network data
# ------------------------------------------------------------------------------------------


def ptdf(data: TransmissionData) -> np.ndarray:
    """[branch, bus] DC power transfer distribution factors, the slack bus taking the balance."""
    pos = {b: i for i, b in enumerate(data.buses)}
    n, m = len(data.buses), len(data.branches)
    incidence = np.zeros((m, n))
    for k, br in enumerate(data.branches):
        incidence[k, pos[br.from_bus]] += 1.0
        incidence[k, pos[br.to_bus]] -= 1.0
    y = np.diag([1.0 / br.x_pu for br in data.branches])
    bbus = incidence.T @ y @ incidence
    keep = [i for i, b in enumerate(data.buses) if b != data.slack_bus]
    out = np.zeros((m, n))
    out[:, keep] = y @ incidence[:, keep] @ np.linalg.inv(bbus[np.ix_(keep, keep)])
    return out


def dc_flows(data: TransmissionData, injection_mw: np.ndarray) -> np.ndarray:
    """[branch, period] DC flows of balanced injections [bus, period], phase shifters included."""
    pos = {b: i for i, b in enumerate(data.buses)}
    shift = np.array([br.shift_rad for br in data.branches])
    if not np.any(shift):
        return ptdf(data) @ injection_mw
    # A shifter drives a flow of its own: the angle shift as an injection pair on its ends.
    extra = np.zeros_like(injection_mw)
    for br, s in zip(data.branches, shift):
        if s:
            f = data.base_mva * s / br.x_pu
            extra[pos[br.from_bus]] -= f
            extra[pos[br.to_bus]] += f
    flows = ptdf(data) @ (injection_mw + extra)
    flows -= (data.base_mva * shift / np.array([br.x_pu for br in data.branches]))[:, None]
    return flows


def transmission_grid(data: TransmissionData, injection_mw: np.ndarray, boundary: Mapping[str, int]) -> TransmissionGrid:
    """The TSO's grid around baseline injections [bus, period] (MW, generation - load,
    feeders' imports included as load); `boundary`: DSO -> pandapower bus."""
    pos = {b: i for i, b in enumerate(data.buses)}
    missing = [f"{d} (bus {b})" for d, b in boundary.items() if b not in pos]
    if missing:
        raise ValueError(f"boundary bus not in the transmission network: {', '.join(missing)}")
    rating = np.array([np.inf if br.rating_mw is None else br.rating_mw for br in data.branches])
    return TransmissionGrid(list(data.buses), [br.name for br in data.branches], ptdf(data),
                            dc_flows(data, injection_mw), rating, {d: pos[b] for d, b in boundary.items()})


def distribution_grid(data: FeederData, points: list[str], p_net_kw: np.ndarray, q_net_kvar: np.ndarray,
                      w_head: np.ndarray, v_min: float = 0.95, v_max: float = 1.05, multiplier: float = 1.0,
                      voltage_dependent_loads: bool = True) -> DistributionGrid:
    """A feeder's grid around its baseline: net injections per node [node, period] (kW, kvar,
    DERs at their schedules minus loads, over `feeder_response(...).nodes`), the squared head
    voltage [period]; `points` are the buses bids inject at ("bus" for all its phases, or
    "bus.1.3")."""
    r = feeder_response(data, voltage_dependent_loads)
    index = {n: i for i, n in enumerate(r.nodes)}
    w_rows = [i for i, n in enumerate(r.nodes) if n[0] != data.source_bus]
    columns = np.zeros((len(r.nodes), len(points)))
    for j, point in enumerate(points):
        bus, phases = parse_connection(point, data)
        for ph in phases:
            columns[index[(bus, ph)], j] = 1000.0 / len(phases)  # kW per phase of one MW spread evenly
    w = r.per_p["w"][w_rows]
    base_w = (r.const["w"][w_rows, None] + r.per_head["w"][w_rows, None] * w_head[None, :]
              + w @ p_net_kw + r.per_q["w"][w_rows] @ q_net_kvar)
    head = r.per_p["p_head"].sum(axis=0) / 1000.0  # MW at the head per kW injected
    return DistributionGrid(list(points), [r.nodes[i] for i in w_rows], w @ columns, head @ columns, base_w,
                            v_min, v_max, multiplier)


def effects(case: MarketCase, cleared: np.ndarray) -> dict:
    """What activating `cleared` [bid, period] (MW) does: injection change per TSO bus, extra
    import per DSO (MW at the boundary, all copies), change of every DSO row; the new flows
    and squared voltages."""
    T = case.periods
    inj = np.zeros((len(case.tso.buses), T))
    dso_inj = {d: np.zeros((len(g.points), T)) for d, g in case.dsos.items()}
    for k, b in enumerate(case.bids):
        if b.so == TSO:
            inj[b.node] += b.direction * cleared[k]
        else:
            dso_inj[b.so][b.node] += b.direction * cleared[k]
    imports = {d: g.multiplier * (g.head_sens @ dso_inj[d]) for d, g in case.dsos.items()}
    for d, pos in case.tso.boundary.items():
        inj[pos] -= imports[d]
    w = {d: g.base_w + g.w_sens @ dso_inj[d] for d, g in case.dsos.items()}
    return {"injection_mw": inj, "imports_mw": imports, "flows_mw": case.tso.base_flow_mw + case.tso.ptdf @ inj,
            "w": w, "imbalance_mw": inj.sum(axis=0)}


def violations(case: MarketCase, cleared: np.ndarray, tol: float = 1e-6) -> dict[str, float]:
    """What the grids' limits see after `cleared` in the market's own linear model: MWh of line
    overload, pu^2-hours of squared-voltage violation per DSO (all copies), and MWh the
    transmission is left out of balance."""
    e = effects(case, cleared)
    over = np.maximum(np.abs(e["flows_mw"]) - case.tso.rating_mw[:, None], 0.0)
    out = {TSO: float((over * case.hours).sum()), "imbalance_mwh": float((np.abs(e["imbalance_mw"]) * case.hours).sum())}
    for d, g in case.dsos.items():
        w = e["w"][d]
        v = np.maximum(w - g.v_max ** 2, 0.0) + np.maximum(g.v_min ** 2 - w, 0.0)
        out[d] = float((g.multiplier * v * case.hours).sum())
    return {k: (v if v > tol else 0.0) for k, v in out.items()}
