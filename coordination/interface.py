"""Boundary coupling between the transmission DC-OPF and the feeders.

* Power: the transmission load at a boundary bus is the sum over its feeders of
  multiplier x substation P (the sum of the phases at the feeder head), in MW, per period.
  The DC-OPF has no reactive power, so Q stays on the distribution side (it is still
  available per feeder as b.q_sub for recording).
* Voltage: the feeder head (source bus) voltage is a mutable Param v_source[t] (pu),
  set from the transmission voltage at the boundary or held at a fixed value; every
  phase of the source bus gets w = v_source^2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyomo.environ as pyo

from coordination.network_data import FeederData


def parameters_head_voltage(b: pyo.Block, v_source: float = 1.0) -> None:
    """The feeder head voltage magnitude (pu) per period, b.v_source[t]."""
    b.v_source = pyo.Param(b.T, mutable=True, initialize=v_source)


def constraints_head_voltage(b: pyo.Block, data: FeederData) -> None:
    """w at every phase of the source bus = v_source^2."""
    root = data.source_bus
    b.head_voltage = pyo.Constraint(b.head_phases, b.T, rule=lambda _, ph, t: b.w[root, ph, t] == b.v_source[t] ** 2)


def parameters_multiplier(b: pyo.Block, multiplier: float = 1.0) -> None:
    """How many identical copies of the feeder stand behind its boundary bus (mutable: the
    co-simulation fixes 'match_bus_load' multipliers only after the first feeder solve).
    Cost terms use the Param; the boundary rows take its value as a constant coefficient
    (see `set_multiplier`)."""
    b.multiplier = pyo.Param(mutable=True, initialize=multiplier)


def constraints_boundary_power(m: pyo.Block, transmission: pyo.Block,
                               feeders_at_bus: Mapping[int, Sequence[pyo.Block]]) -> None:
    """Transmission boundary load (MW) = sum of multiplier x feeder substation P (kW) / 1000.

    `transmission.boundary_mw[bus, t]` are the boundary load variables of the DC-OPF
    (see `coordination.transmission.variables_transmission`); every feeder block needs
    b.multiplier and b.p_sub[t]. The multipliers enter as numbers, not as Params: a mutable
    coefficient would be re-sent to HiGHS at every solve and cost it its factorisation."""
    def rule(_, bus, t):
        return transmission.boundary_mw[bus, t] == pyo.quicksum(
            pyo.value(fb.multiplier) * fb.p_sub[t] for fb in feeders_at_bus[bus]) / 1000.0

    m.boundary_power = pyo.Constraint(transmission.boundary_buses, transmission.T, rule=rule)
    m.boundary_power_rule = rule
    m.feeders_at_bus = dict(feeders_at_bus)
    m.boundary_power_periods = list(transmission.T)


def set_multiplier(m: pyo.Block, fb: pyo.Block, multiplier: float) -> list:
    """Change a feeder's multiplier; returns the boundary constraints rewritten with it (for
    `PersistentHighs.replace_constraints`)."""
    fb.multiplier = float(multiplier)
    changed = []
    for bus, blocks in m.feeders_at_bus.items():
        if any(blk is fb for blk in blocks):
            for t in m.boundary_power_periods:
                con = m.boundary_power[bus, t]
                con.set_value(m.boundary_power_rule(m, bus, t))
                changed.append(con)
    return changed


def set_head_voltage(b: pyo.Block, v_pu) -> None:
    """Head voltage per period: one value for all periods, or one per period."""
    periods = list(b.T)
    values = [float(v_pu)] * len(periods) if not hasattr(v_pu, "__len__") else [float(v) for v in v_pu]
    for t, v in zip(periods, values):
        b.v_source[t] = v
