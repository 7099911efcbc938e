"""Flexibility bids: what a flexibility service provider (FSP) offers a market.

A bid offers to change the active power injected at one point of one system operator's
(SO's) grid, in one direction (`UP` injects more: a generator or battery raising output, a
load or charger drawing less; `DOWN` the reverse, PV curtailment among them), up to a
quantity per period, at a price per MWh activated. Formats follow the literature's market
designs: fully divisible; indivisible (all or nothing, over all its periods at once, a block
bid); partially divisible (nothing, or between a minimum and the offered quantity in every
period it offers); and exclusive groups (at most one bid of a group cleared).

Quantities are in MW of one copy of the SO's grid (a feeder standing for `multiplier`
identical copies: `coordination.centralized`), prices per MWh of that quantity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

UP, DOWN = 1, -1
FORMATS = ("divisible", "indivisible", "partial")


@dataclass(frozen=True)
class Bid:
    name: str
    so: str  # "tso" or a DSO's name (its feeder)
    node: int  # injection point in the SO's grid (`case.TransmissionGrid.buses` / `DistributionGrid.nodes` position)
    direction: int  # UP (+1) or DOWN (-1)
    quantity_mw: np.ndarray = field(compare=False)  # [period], >= 0
    price: np.ndarray = field(compare=False)  # [period], currency per MWh
    fsp: str = ""  # the provider (aggregation and markups go by it)
    kind: str = ""  # resource class: generator, pv, battery, flexible_load, dg, ev
    format: str = "divisible"
    min_mw: float = 0.0  # partial: the least quantity cleared in a period it offers
    group: str | None = None  # exclusive group: at most one bid of it cleared

    @property
    def integer(self) -> bool:
        """Whether clearing it needs a binary (block and partial bids, exclusive groups)."""
        return self.format != "divisible" or self.group is not None


def bid(name: str, so: str, node: int, direction: int, quantity_mw, price, periods: int, **kw) -> Bid:
    """A bid with scalar or per-period quantity and price broadcast over `periods`."""
    q = np.broadcast_to(np.asarray(quantity_mw, dtype=float), (periods,)).copy()
    p = np.broadcast_to(np.asarray(price, dtype=float), (periods,)).copy()
    return Bid(name, so, node, direction, q, p, **kw)


def check_bids(bids: Iterable[Bid], nodes: Mapping[str, int], periods: int) -> None:
    """Refuse bids a market cannot clear, naming the bid: unknown SO, node out of its grid,
    a quantity or price of the wrong length, negative or not finite, an unknown format."""
    seen: set[str] = set()
    for b in bids:
        where = f"bid {b.name!r}"
        if b.name in seen:
            raise ValueError(f"{where}: two bids have this name")
        seen.add(b.name)
        if b.so not in nodes:
            raise ValueError(f"{where}: unknown system operator {b.so!r} (known: {', '.join(nodes)})")
        if not 0 <= b.node < nodes[b.so]:
            raise ValueError(f"{where}: node {b.node} is not in {b.so}'s grid (0..{nodes[b.so] - 1})")
        if b.direction not in (UP, DOWN):
            raise ValueError(f"{where}: direction must be +1 (up) or -1 (down), got {b.direction}")
        for label, arr in (("quantity_mw", b.quantity_mw), ("price", b.price)):
            if np.shape(arr) != (periods,):
                raise ValueError(f"{where}: {label} has {np.size(arr)} values for {periods} periods")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{where}: {label} is not finite")
        if np.any(b.quantity_mw < 0):
            raise ValueError(f"{where}: negative quantity")
        if b.format not in FORMATS:
            raise ValueError(f"{where}: format must be one of {', '.join(FORMATS)}, got {b.format!r}")
        if b.format == "partial" and not 0 < b.min_mw <= b.quantity_mw.max(initial=0.0):
            raise ValueError(f"{where}: a partial bid needs 0 < min_mw <= its largest quantity (min_mw={b.min_mw})")


def with_markups(bids: Iterable[Bid], by_fsp: Mapping[str, float] | None = None,
                 by_kind: Mapping[str, float] | None = None) -> list[Bid]:
    """Prices raised by a markup (a share: 0.2 is +20 % of the bid's cost) per FSP, else per
    resource class, for strategic-bidding studies. A cost below zero (a generator's down bid
    returns its fuel saving) is moved by the markup towards the FSP's favour too."""
    by_fsp, by_kind = by_fsp or {}, by_kind or {}
    out = []
    for b in bids:
        markup = by_fsp.get(b.fsp, by_kind.get(b.kind, 0.0))
        out.append(replace(b, price=b.price + markup * np.abs(b.price)) if markup else b)
    return out


def aggregate(bids: Iterable[Bid], min_size_mw: float = 0.0) -> tuple[list[Bid], list[Bid]]:
    """FSP aggregation and the entry barrier: divisible bids of one FSP at one node of one SO in
    one direction become one bid (quantities added, the price their quantity-weighted mean per
    period, so the cost of clearing all of it is unchanged); then every bid whose largest
    quantity stays below `min_size_mw` is dropped. Returns (kept, dropped)."""
    groups: dict[tuple, list[Bid]] = {}
    out: list[Bid] = []
    for b in bids:
        if b.integer or not b.fsp:
            out.append(b)
        else:
            groups.setdefault((b.fsp, b.so, b.node, b.direction), []).append(b)
    for (fsp, so, node, direction), members in groups.items():
        if len(members) == 1:
            out.append(members[0])
            continue
        q = np.sum([m.quantity_mw for m in members], axis=0)
        cost = np.sum([m.quantity_mw * m.price for m in members], axis=0)
        price = np.where(q > 0, cost / np.where(q > 0, q, 1.0), np.mean([m.price for m in members], axis=0))
        kinds = sorted({m.kind for m in members})
        out.append(Bid(f"{fsp}@{so}:{node}:{'up' if direction == UP else 'down'}", so, node, direction, q, price,
                       fsp=fsp, kind=kinds[0] if len(kinds) == 1 else "mixed"))
    kept = [b for b in out if b.quantity_mw.max(initial=0.0) >= min_size_mw]
    dropped = [b for b in out if b.quantity_mw.max(initial=0.0) < min_size_mw]
    return kept, dropped
