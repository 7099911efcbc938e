"""A flexibility market for one gate of a study: the grids, their baseline and the bids, from
what the coordinator already knows of it (`coordination.receding_horizon.RecedingHorizon`,
built with `build_problem=False`: the networks, the forecasts from the gate on, the DER fleets
and the measured state).

Baseline (no flexibility), per period of the look-ahead:
- distribution: loads at their forecast, each DER at its kind's baseline (`DerKind.baseline_kw`:
  PV at its forecast available power, flexible loads at their baseline, batteries idle, gensets
  off); the feeder's import from its LinDist3Flow map, times its copies;
- transmission: the loads at their forecast plus the feeders' imports, generators at the
  energy market's dispatch: merit order by linear cost within their limits, no network
  (the copper-plate outcome whose congestion the TSO must relieve).
Bids (one per unit, direction and look-ahead; prices per MWh): transmission generators up to
p_max at cost + markup and down to p_min at the down price; each DER what its kind offers
(`DerKind.offers`: PV curtailment, battery discharge and charge at their rating, gensets up to
their rating at their own cost, flexible loads both ways at their shift price; what a battery's
stored energy allows over several periods is not checked, bids being per period), at the
kind's price in `MarketSettings.der_prices` where it has no cost of its own. Every price and
share is a field of `MarketSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from coordination.ders import parse_connection
from coordination.feeder_response import feeder_response
from coordination.market.bids import DOWN, UP, bid, with_markups
from coordination.market.case import TSO, MarketCase, distribution_grid, transmission_grid


@dataclass
class MarketSettings:
    """The chosen values of a market study (none comes from a source; all are parameters)."""

    generator_markup: float = 0.1  # share of the generator's linear cost added to its up bids
    generator_down_price: float = 5.0  # per MWh a generator asks to lower its output (lost margin)
    # Per MWh, by DER kind, for kinds without cost data of their own (`DerKind.offers`): PV's lost
    # feed-in revenue per MWh curtailed, a battery's wear and lost arbitrage per MWh either way.
    der_prices: dict[str, float] = field(default_factory=lambda: {"pv": 20.0, "battery": 10.0})
    markup_by_kind: dict[str, float] = field(default_factory=dict)  # strategic bidding: share added per class
    min_bid_mw: float = 0.0  # the entry barrier (after nothing is aggregated)
    v_min: float | None = None  # None: the coordinator's limits
    v_max: float | None = None


def merit_order(costs: np.ndarray, p_min: np.ndarray, p_max: np.ndarray, demand: float) -> np.ndarray:
    """The copper-plate dispatch meeting `demand` (MW) at least linear cost within limits."""
    n = len(costs)
    if demand > p_max.sum() + 1e-9 or demand < p_min.sum() - 1e-9:
        raise ValueError(f"the generators cannot meet {demand:.1f} MW (between {p_min.sum():.1f} and {p_max.sum():.1f} MW)")
    out = linprog(costs, A_eq=np.ones((1, n)), b_eq=[demand], bounds=list(zip(p_min, p_max)), method="highs")
    return np.asarray(out.x)


def market_case(rh, step: int, measured, settings: MarketSettings | None = None) -> MarketCase:
    """The market of the gate before `step` over the coordinator's look-ahead (module docstring)."""
    settings = settings or MarketSettings()
    data = rh.inputs(step, measured)
    H = rh.H
    hours = np.array(rh.period_steps, dtype=float) * rh.step_hours
    tn = rh.transmission
    pos = {b: i for i, b in enumerate(tn.buses)}
    load = np.zeros((len(tn.buses), H))
    for bus, mw in data["bus_load_mw"].items():
        load[pos[bus]] += mw
    dsos, bids = {}, []
    for name, setup in rh.setups.items():
        fd = setup.data
        r = feeder_response(fd, voltage_dependent_loads=False)
        index = {n: i for i, n in enumerate(r.nodes)}
        nodes, p_per_load, q_per_load = fd.load_matrix()
        levels = np.asarray(data["load_levels"][name])  # [load, period]
        p_net, q_net = np.zeros((len(r.nodes), H)), np.zeros((len(r.nodes), H))
        for i, n in enumerate(nodes):
            p_net[index[n]] -= p_per_load[i] @ levels
            q_net[index[n]] -= q_per_load[i] @ levels
        units = setup.ders
        inputs = {unit.name: {i.keyword: data[i.keyword][name][unit.name] for i in kind.inputs
                              if unit.name in data.get(i.keyword, {}).get(name, {})}
                  for kind, unit in units.units()}
        for kind, unit in units.units():
            bus, phases = parse_connection(unit.at, fd)
            base = kind.baseline_kw(unit, inputs[unit.name], H)
            for ph in phases:
                p_net[index[(bus, ph)]] += base / len(phases)
        points = sorted({u.at for _, u in units.units()})
        at = {p: i for i, p in enumerate(points)}
        w_head = np.full(H, float(data["head_voltage"].get(name, setup.v_source)) ** 2)
        v_min = settings.v_min if settings.v_min is not None else setup.v_min
        v_max = settings.v_max if settings.v_max is not None else setup.v_max
        grid = distribution_grid(fd, points, p_net, q_net, w_head, v_min, v_max, setup.multiplier, voltage_dependent_loads=False)
        dsos[name] = grid
        head = (r.const["p_head"].sum() + r.per_head["p_head"].sum(axis=0) * w_head
                + r.per_p["p_head"].sum(axis=0) @ p_net + r.per_q["p_head"].sum(axis=0) @ q_net) / 1000.0
        load[pos[setup.bus]] += setup.multiplier * head
        for kind, unit in units.units():
            for offer in kind.offers(unit, inputs[unit.name], H, settings.der_prices):
                way = "up" if offer.direction == UP else "down"
                bids.append(bid(f"{name}/{unit.name} {way}", name, at[unit.at], offer.direction, offer.kw / 1000.0,
                                offer.price, H, fsp=unit.name, kind=kind.name))
    # The energy market's dispatch meets the total (losses left out, as the DC model does).
    gens = tn.generators
    costs = np.array([g.c1 for g in gens])
    p_min = np.array([0.0 if g.p_min_mw is None else max(g.p_min_mw, 0.0) for g in gens])
    p_max = np.array([np.inf if g.p_max_mw is None else g.p_max_mw for g in gens])
    p_max = np.where(np.isfinite(p_max), p_max, load.sum(axis=0).max() * 2)
    dispatch = np.array([merit_order(costs, p_min, p_max, float(load[:, t].sum())) for t in range(H)]).T
    injection = -load
    for k, g in enumerate(gens):
        injection[pos[g.bus]] += dispatch[k]
        if p_max[k] > 1e-9:
            up = settings.generator_markup
            bids.append(bid(f"{g.name} up", TSO, pos[g.bus], UP, p_max[k] - dispatch[k], max(g.c1, 0.0) * (1 + up) + 1e-3, H,
                            fsp=g.name, kind="generator"))
            bids.append(bid(f"{g.name} down", TSO, pos[g.bus], DOWN, dispatch[k] - p_min[k], settings.generator_down_price, H,
                            fsp=g.name, kind="generator"))
    bids = [b for b in bids if b.quantity_mw.max(initial=0.0) > max(settings.min_bid_mw, 1e-9)]
    if settings.markup_by_kind:
        bids = with_markups(bids, by_kind=settings.markup_by_kind)
    return MarketCase(transmission_grid(tn, injection, {n: s.bus for n, s in rh.setups.items()}), dsos, bids, hours)
