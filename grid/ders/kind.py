"""What every DER kind declares and does: its readings, and a controller per feeder.

A controller drives all units of one kind in one feeder at once (pandapower's controller
protocol is the model: one controller, many elements), with arrays rather than per-unit
Python work where a step has to be fast. Per step, in this order:

* `apply(k)` — before the solve (pandapower's `time_step` and `control_step`): put the
  step's inputs and the set-points in force into OpenDSS (irradiance, dispatch). Kinds
  that are OpenDSS Loads return their kW instead, which the feeder writes with its own
  loads in one batch (they were created after the feeder's loads, in kind order);
* `readings(k)` — after the solve: what the step records, one array per declared
  `Reading`, one value per unit (or device);
* `advance()` — once the step is final (`finalize_step`): book its energy (SOC, energy
  owed, ramp reference, time in state).

Between steps `set_setpoints(...)` takes set-points from outside (kept until changed), and
`state()` / `restore(state)` save and put back what carries from step to step, taken
after a solve and before `advance` (see `grid.feeder.FeederModel.state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from grid.ders.placement import Connection, LoadPoint, choose_connections


@dataclass(frozen=True)
class Energy:
    """An energy KPI of a feeder-total reading (tandem.kpis: kWh per copy, MWh for the system):
    the time integral of the reading's `part`: "net", "positive", "negative" (as a positive
    amount) or "abs"."""

    name: str
    part: str
    description: str


@dataclass(frozen=True)
class Reading:
    """One quantity a kind reports after each solve, one value per unit.

    `total`: summed over the units into a feeder total (e.g. feeders/pv_kw); `device`: also
    recorded per unit, along this dimension (e.g. "battery" for devices/<feeder>/battery_soc)."""

    name: str
    units: str
    description: str
    total: bool = False
    device: str | None = None
    dtype: str = "f8"
    meaning: str = ""  # the longer text docs/results.md shows; the description when empty
    energy: tuple[Energy, ...] = ()  # the KPIs integrated from it
    dispatched: str = ""  # legend of its line in the report's panel of dispatched DERs (system MW); "": none


@dataclass(frozen=True)
class SetpointPart:
    """A kind's part of the set-point message (`grid.setpoints.Setpoints`, under the kind's
    key): the values it takes by unit name, as a type pydantic validates, and what they mean."""

    type: object
    description: str


@dataclass
class FeederContext:
    """What a kind needs of its feeder to place and drive its units."""

    dss: object  # the feeder's OpenDSSDirect context
    alt: object  # its AltDSS view (batch reads)
    step_hours: float
    local_hours: np.ndarray  # hour of the day of each step, on the run's clock
    loads: list[LoadPoint]  # the feeder's own loads, where units are placed
    rng: np.random.Generator  # placement and sessions; kinds draw from it in table order
    irradiance_kw_m2: np.ndarray  # per step (PV)
    load_shape: np.ndarray  # the feeder's load level per step, peak 1 (flexible loads' baseline)
    controllers: dict[str, Controller] = field(default_factory=dict)  # built so far, by key

    @property
    def peak_kw(self) -> float:
        """The feeder's nominal load: penetrations are shares of it."""
        return sum(p.kw for p in self.loads)

    def place(self, spec) -> tuple[list[Connection], float]:
        """The connections of a kind placed by penetration (spec.buses, phases, count) and
        each unit's even share of the total rating, penetration x nominal load."""
        sites = choose_connections(self.dss, self.loads, spec.buses, spec.phases, spec.count, self.rng)
        return sites, spec.penetration * self.peak_kw / len(sites)


class Controller:
    """The units of one kind in one feeder (see the module docstring for the step order).

    `key` names the kind in the scenario's feeder spec (feeders[].<key>) and in the fleet;
    `READINGS` declares what `readings` returns and `SETPOINT` what `set_setpoints` takes
    (None: a kind that takes none). The defaults below suit a kind with nothing to do at
    that point."""

    key: ClassVar[str]
    READINGS: ClassVar[tuple[Reading, ...]]
    SETPOINT: ClassVar[SetpointPart | None] = None

    units: list

    def idle(self) -> bool:
        """A kind without units: nothing to apply, advance or read, every step."""
        return not self.units

    def devices(self) -> dict[str, list[str]]:
        """Unit names along each device dimension of this kind's readings."""
        dims = {r.device for r in self.READINGS if r.device}
        return {dim: [u.name for u in self.units] for dim in sorted(dims)}

    def apply(self, k: int) -> np.ndarray | None:
        """Step k's inputs into OpenDSS; the kW of the kind's Loads, or None if it has none."""
        return None

    def readings(self, k: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def set_setpoints(self, part: dict) -> None:
        """The kind's part of a set-point message (`SETPOINT`), names already checked."""
        raise NotImplementedError(f"{self.key} takes no set-points")

    def advance(self) -> None:
        """Book the step's energy; nothing to book by default."""

    def state(self) -> dict:
        """What carries to the next step, JSON-ready (keys are the checkpoint's)."""
        return {}

    def restore(self, state: dict) -> None:
        """Inverse of `state` on freshly built units."""


def read_only(values: np.ndarray) -> np.ndarray:
    """Controller state handed out without copies: callers cannot change it."""
    values.flags.writeable = False
    return values


NONE = read_only(np.empty(0))


def in_window(hour: float, window: tuple[float, float]) -> bool:
    """Whether a local hour falls in [start, end), a window that may wrap midnight (22 -> 6)."""
    start, end = window
    return start <= hour < end if start <= end else hour >= start or hour < end


def window_hours(window: tuple[float, float]) -> float:
    return (window[1] - window[0]) % 24 or 24.0


def check_count(state: list, units: list, key: str) -> None:
    """A checkpoint's units must be the feeder's."""
    if len(state) != len(units):
        raise ValueError(f"checkpoint holds {len(state)} {key} units, the feeder has {len(units)}")


def unknown_names(values: dict | None, units: list) -> list[str]:
    names = {u.name for u in units}
    return [n for n in values or {} if n not in names]
