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
    conn: str = "wye"  # "delta": a three-phase unit on an ungrounded delta feeder

    @property
    def conn_arg(self) -> str:
        """What a `New ...` command adds for the connection ("" for OpenDSS's default, wye)."""
        return "" if self.conn == "wye" else f" conn={self.conn}"


@dataclass
class LoadPoint:
    """A feeder load: where it is and its nominal (peak) power."""

    name: str
    at: Connection
    kw: float
    kvar: float
    delta: bool = False  # the load is delta-connected


def delta_feeder(loads: list[LoadPoint]) -> bool:
    """A feeder whose loads are all delta-connected: an ungrounded three-wire system (IEEE 37).
    Its DERs connect phase to phase and its voltages are line-to-line; a feeder with any wye
    load keeps line-to-ground connections (the bundled feeders, so their results stay as they were)."""
    return bool(loads) and all(p.delta for p in loads)


def feeder_loads(dss) -> list[LoadPoint]:
    """Every load of the compiled feeder with its connection, as a DER would attach next to it."""
    points = []
    wiring = []  # each load's bus, nodes, phases and line-to-ground kV base
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
        points.append(LoadPoint(name, at, dss.Loads.kW(), dss.Loads.kvar(), bool(dss.Loads.IsDelta())))
        wiring.append((bus_name, nodes, phases, kv_ln))
        index = dss.Loads.Next()
    if delta_feeder(points):  # DERs connect as the loads do: phase to phase
        for point, (bus_name, nodes, phases, kv_ln) in zip(points, wiring):
            if phases == 1 and len(nodes) >= 2:  # across the two phases it is between, at line-to-line kV
                point.at = Connection(f"{bus_name}.{nodes[0]}.{nodes[1]}", 1, kv_ln * np.sqrt(3))
            elif phases == 3:
                point.at = Connection(point.at.bus, 3, kv_ln * np.sqrt(3), "delta")
    return points


def bus_connection(dss, bus: str, delta: bool = False) -> Connection:
    """A connection at an explicitly named bus ("48" three-phase, "7.1" single-phase; on a
    delta feeder "7.1.2" single-phase across phases 1 and 2, "48" three-phase delta)."""
    name, *nodes = bus.split(".")
    if name.lower() not in [b.lower() for b in dss.Circuit.AllBusNames()]:
        raise ValueError(f"unknown feeder bus {name!r}")
    dss.Circuit.SetActiveBus(name)
    kv_ln = dss.Bus.kVBase()
    if delta:  # an ungrounded feeder: nothing connects line to ground
        if len(nodes) == 2:
            return Connection(bus, 1, kv_ln * np.sqrt(3))
        if (not nodes and dss.Bus.NumNodes() >= 3) or len(nodes) == 3:
            return Connection(bus, 3, kv_ln * np.sqrt(3), "delta")
        raise ValueError(f"bus {bus!r}: this feeder is delta (ungrounded): connect across two phases "
                         f"(e.g. '{name}.1.2') or to all three ('{name}')")
    if len(nodes) == 1:
        return Connection(bus, 1, kv_ln)
    phases = len(nodes) or dss.Bus.NumNodes()
    return Connection(bus, phases, kv_ln * (np.sqrt(3) if phases > 1 else 1.0))


def choose_connections(dss, loads: list[LoadPoint], buses: list[str] | None, phases: str, count: int | None,
                       rng: np.random.Generator) -> list[Connection]:
    """Seeded random load buses (or the given buses) for `count` units."""
    delta = delta_feeder(loads)
    if buses:
        return [bus_connection(dss, b, delta) for b in buses]
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
            nodes = nodes or ["1", "2", "3"]
            i = int(rng.integers(0, len(nodes)))
            if delta:  # across phases i and i+1, at the line-to-line kV it already has
                at = Connection(f"{name}.{nodes[i]}.{nodes[(i + 1) % len(nodes)]}", 1, at.kv)
            else:
                at = Connection(f"{name}.{nodes[i]}", 1, at.kv / np.sqrt(3))
        chosen.append(at)
    return chosen
