"""The kinds table: every DER kind (and the local controls), in the order the fleet builds
them and reports their readings. A new kind is a module with its controller and one entry
here (and its part of `grid.setpoints.Setpoints`, named as the kind's key).

The order is part of the results: units are placed by one seeded random generator in this
order, and OpenDSS elements are created in it (node order, admittance matrix). New kinds
go last, where they create nothing unless configured.
"""

from __future__ import annotations

from grid.ders.battery import BatteryController
from grid.ders.controls import LocalControls
from grid.ders.dg import DgController
from grid.ders.ev import EvController
from grid.ders.flexible_load import FlexibleLoadController
from grid.ders.kind import Controller, Reading
from grid.ders.pv import PvController

KINDS: tuple[type[Controller], ...] = (
    PvController, BatteryController, EvController, LocalControls, DgController, FlexibleLoadController,
)

# What `DerFleet.readings` returns, in order, with units and descriptions.
READINGS: tuple[Reading, ...] = tuple(r for kind in KINDS for r in kind.READINGS)
# Readings summed into feeder totals, and readings recorded per device, in order.
TOTALS: tuple[str, ...] = tuple(r.name for r in READINGS if r.total)
DEVICE_SERIES: tuple[str, ...] = tuple(r.name for r in READINGS if r.device)
# One name, one quantity: the wire and the results file address readings by name.
assert len({r.name for r in READINGS}) == len(READINGS) and not any(r.total and r.device for r in READINGS), \
    "each reading is a feeder total or a per-device series, under a name of its own"
