"""Distributed energy resources on feeder buses, for the look-ahead problems.

One module per kind (`pv`, `battery`, `flexible_load`, `ev`, `dg`), each a data class of a
unit and a `kind.DerKind` with everything a problem (and the receding horizon) does with the
kind; `registry.KINDS` lists them, and nothing here names a kind. Each unit gets its own pyomo Block under its feeder's block, fb.<kind>[name],
with its variables, constraints, cost measures and what it feeds into the grid, p_kw[t]
and q_kvar[t], spread evenly over the unit's phases by `der_injections` for the
LinDist3Flow balance.

Where a unit sits: "bus.phase" (single-phase), "bus.1.2" or "bus" (all phases of the bus).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyomo.environ as pyo

from coordination.ders.kind import DerKind
from coordination.ders.registry import BY_NAME, KINDS
from coordination.network_data import FeederData
from coordination.options import Options

__all__ = [
    "BY_NAME", "KINDS", "DerKind", "FeederDers", "add_ders", "der_injections", "ders_from_fleet", "parse_connection",
    "unit_blocks",
]


class FeederDers(dict):
    """The DERs of one feeder: a list of units per kind, under the kind's `field`
    (ders["pv"], ders["batteries"], ...; every kind of the registry, empty when absent)."""

    def __init__(self, **units: list):
        fields = [kind.field for kind in KINDS]
        unknown = sorted(set(units) - set(fields))
        if unknown:
            raise TypeError(f"unknown DER kind {unknown[0]!r} (kinds: {', '.join(fields)})")
        super().__init__({f: list(units.get(f, ())) for f in fields})

    @classmethod
    def none(cls) -> "FeederDers":
        return cls()

    def of(self, kind: DerKind) -> list:
        """The units of one kind."""
        return self[kind.field]

    def units(self) -> Iterator[tuple[DerKind, object]]:
        """(kind, unit) of every unit, kinds in registry order."""
        for kind in KINDS:
            for unit in self.of(kind):
                yield kind, unit


def parse_connection(at: str, data: FeederData) -> tuple[str, tuple[int, ...]]:
    """'48' -> ('48', all phases of 48); '7.1' -> ('7', (1,)); '48.1.2' -> ('48', (1, 2))."""
    bus, *nodes = at.lower().split(".")
    if bus not in data.buses:
        raise ValueError(f"feeder {data.name}: unknown bus {bus!r} for a DER at {at!r}")
    phases = tuple(int(n) for n in nodes if n != "0") or data.buses[bus].phases
    missing = set(phases) - set(data.buses[bus].phases)
    if missing:
        raise ValueError(f"feeder {data.name}: bus {bus} has no phase {sorted(missing)} for a DER at {at!r}")
    return bus, phases


def build_units(b: pyo.Block, ders: FeederDers, periods: list[int], options: Options, convex: bool) -> None:
    """One indexed Block per kind on b (b.pv[name], b.battery[name], ...), each unit built by its kind."""
    for kind in KINDS:
        units = {u.name: u for u in ders.of(kind)}

        def rule(d, name, kind=kind, units=units):
            d.unit = units[name]  # the unit's data, for whoever reads the block
            kind.build(d, units[name], periods, options, convex)

        b.add_component(kind.name, pyo.Block(list(units), rule=rule))


def add_ders(fb: pyo.Block, data: FeederData, ders: FeederDers, periods: list[int], options: Options,
             convex: bool = False) -> None:
    """The units of a feeder on its block (`build_units`), with where each sits (fb.der_at)."""
    for _, unit in ders.units():
        parse_connection(unit.at, data)  # fail early on unknown buses or phases
    build_units(fb, ders, list(periods), options, convex)
    fb.der_at = {(kind.name, u.name): u.at for kind, u in ders.units()}


def unit_blocks(b: pyo.Block) -> list[tuple[DerKind, str, pyo.Block]]:
    """(kind, name, block) of every unit under a block, in registry order."""
    return [(kind, name, d) for kind in KINDS for name, d in b.component(kind.name).items()]


def der_injections(fb: pyo.Block, data: FeederData) -> tuple[dict, dict]:
    """What the DERs of a feeder block feed in per node and period, {(bus, phase): {t: expr}},
    each unit split evenly over its phases (P and Q)."""
    p_inj: dict[tuple[str, int], dict] = {}
    q_inj: dict[tuple[str, int], dict] = {}
    for kind, name, d in unit_blocks(fb):
        bus, phases = parse_connection(fb.der_at[(kind.name, name)], data)
        share = 1.0 / len(phases)
        for ph in phases:
            pn = p_inj.setdefault((bus, ph), {})
            qn = q_inj.setdefault((bus, ph), {})
            for t in d.T:
                pn[t] = pn.get(t, 0.0) + share * d.p_kw[t]
                qn[t] = qn.get(t, 0.0) + share * d.q_kvar[t]
    return p_inj, q_inj


def ders_from_fleet(fleet, spec=None) -> FeederDers:
    """The DERs of a `grid.ders.DerFleet` as data, each kind read by its `from_fleet`; with the
    feeder's scenario spec also the kinds that need it (gensets, flexible loads)."""
    return FeederDers(**{kind.field: kind.from_fleet(fleet, spec) for kind in KINDS})
