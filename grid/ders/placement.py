"""Where DERs connect: the feeder's loads, explicit buses, and seeded random placement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Connection:
    """Where a DER connects: bus, phases (e.g. "7.1" or "48.1.2.3"), and its rated kV."""

    bus: str
    phases: int
    kv: float


@dataclass
class LoadPoint:
    """A feeder load: where it is and its nominal (peak) power."""

    name: str
    at: Connection
    kw: float
    kvar: float


def feeder_loads(dss) -> list[LoadPoint]:
    """Every load of the compiled feeder with its connection, as a DER would attach next to it."""
    points = []
    index = dss.Loads.First()
    while index > 0:
        name = dss.Loads.Name()
        bus = dss.CktElement.BusNames()[0]
        phases = dss.CktElement.NumPhases()
        bus_name = bus.split(".")[0]
        nodes = [n for n in bus.split(".")[1:] if n != "0"] or ["1", "2", "3"][:phases]
        if dss.Circuit.SetActiveBus(bus_name) < 0:
            # OpenDSS lists buses when it computes voltage bases: a bus named only after that
            # (often a misspelt one) is connected to nothing.
            raise ValueError(f"load {name} is on bus {bus_name!r}, which no line or transformer connects "
                             "(a misspelt bus, or a load defined after CalcVoltageBases)")
        kv_ln = dss.Bus.kVBase()
        if phases == 1:  # a delta load across two phases gets a wye DER on its first phase
            at = Connection(f"{bus_name}.{nodes[0]}", 1, kv_ln)
        else:
            at = Connection(f"{bus_name}.{'.'.join(nodes[:phases])}" if len(nodes) >= phases else bus_name, phases, kv_ln * np.sqrt(3))
        points.append(LoadPoint(name, at, dss.Loads.kW(), dss.Loads.kvar()))
        index = dss.Loads.Next()
    return points


def bus_connection(dss, bus: str) -> Connection:
    """A connection at an explicitly named bus ("48" three-phase, "7.1" single-phase)."""
    name, *nodes = bus.split(".")
    if name.lower() not in [b.lower() for b in dss.Circuit.AllBusNames()]:
        raise ValueError(f"unknown feeder bus {name!r}")
    dss.Circuit.SetActiveBus(name)
    kv_ln = dss.Bus.kVBase()
    if len(nodes) == 1:
        return Connection(bus, 1, kv_ln)
    phases = len(nodes) or dss.Bus.NumNodes()
    return Connection(bus, phases, kv_ln * (np.sqrt(3) if phases > 1 else 1.0))


def choose_connections(dss, loads: list[LoadPoint], buses: list[str] | None, phases: str, count: int | None,
                       rng: np.random.Generator) -> list[Connection]:
    """Seeded random load buses (or the given buses) for `count` units."""
    if buses:
        return [bus_connection(dss, b) for b in buses]
    candidates = [p for p in loads if phases != "three" or p.at.phases == 3]
    if not candidates:
        raise ValueError(f"no load bus offers a {phases}-phase connection")
    n = count or min(len(candidates), 100)
    picks = rng.choice(len(candidates), size=n, replace=n > len(candidates))
    chosen = []
    for i in picks:
        at = candidates[int(i)].at
        if phases == "single" and at.phases > 1:
            name, *nodes = at.bus.split(".")
            node = (nodes or ["1", "2", "3"])[int(rng.integers(0, len(nodes) or 3))]
            at = Connection(f"{name}.{node}", 1, at.kv / np.sqrt(3))
        chosen.append(at)
    return chosen
