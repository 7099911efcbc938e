"""Flexible loads: OpenDSS Loads (constant power from 0.7 to 1.3 pu, the spec's lagging power factor) whose
baseline follows the feeder's load shape, the kW-weighted level of its own loads (so it
is as diversified as the feeder as a whole, not per unit), scaled so the baselines' peaks
total `penetration` x the feeder's nominal load.

A set-point shifts a unit's consumption (kW, + = more), clipped to [-down_pu, +up_pu] x
its baseline peak and never below zero consumption. What is shifted is owed: the energy
owed grows by what was shifted down and shrinks by what was shifted up (kWh, exactly
shift x step hours per step)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grid.ders.kind import Controller, Energy, FeederContext, Reading, SetpointPart, check_count, read_only
from grid.ders.placement import Connection


@dataclass
class FlexibleLoadUnit:
    name: str
    at: Connection
    peak_kw: float  # baseline peak
    up_kw: float  # largest increase above the baseline
    down_kw: float  # largest decrease below it
    power_factor: float
    shift_price: float  # per MWh moved, for the coordinator
    baseline_pu: np.ndarray  # per step, share of peak_kw (shared by all units of a feeder)
    owed_kwh: float = 0.0  # shifted down minus shifted up, at the last step's end
    shift_kw: float = 0.0  # the last step's shift
    setpoint_kw: float | None = None  # shift from outside; None: the baseline

    @property
    def baseline_kw(self) -> np.ndarray:
        """The baseline over the run's steps (what the coordinator forecasts)."""
        return self.peak_kw * self.baseline_pu

    @property
    def q_per_p(self) -> float:
        """kvar per kW of the load's power factor."""
        return float(np.sqrt(1.0 - self.power_factor**2) / self.power_factor)


class FlexibleLoadController(Controller):
    """All flexible loads of a feeder: loads whose kW the feeder writes with its own."""

    key = "flexible_load"
    SETPOINT = SetpointPart(dict[str, float | None], (
        "`shift_kw` or `null`: consumption a flexible load moves from its baseline (+ more; clipped to its limits "
        "and never below zero consumption); `null` returns it to its baseline"))
    READINGS = (
        Reading("flexible_load_kw", "kW", "consumption of the flexible loads (baseline plus shift)", total=True),
        Reading("flexible_load_shift_kw", "kW", "consumption shifted from the baseline (+ more)", total=True,
                dispatched="flexible loads (+ more consumed)",
                energy=(Energy("flexible_load_moved_up", "positive", "consumption flexible loads moved above their baseline"),
                        Energy("flexible_load_moved_down", "negative", "consumption flexible loads moved below their baseline"))),
        Reading("flexible_load_unit_shift_kw", "kW", "consumption each flexible load shifted from its baseline (+ more)",
                device="flexible_load"),
        Reading("flexible_load_owed_kwh", "kWh", "energy owed at the step's end: shifted down minus shifted up", total=True),
    )

    def __init__(self, ctx: FeederContext, spec):
        self.step_hours = ctx.step_hours
        self.units: list[FlexibleLoadUnit] = []
        shape = np.asarray(ctx.load_shape, dtype=float)
        peak = shape.max() if len(shape) else 0.0
        shape = read_only(shape / peak if peak > 0 else shape.copy())
        if spec.penetration > 0:
            sites, kw = ctx.place(spec)
            self.units = [FlexibleLoadUnit(f"flex_{i}", at, kw, spec.up_pu * kw, spec.down_pu * kw, spec.power_factor,
                                           spec.shift_price, shape) for i, at in enumerate(sites)]
        for unit in self.units:
            ctx.dss.Text.Command(
                f"New Load.{unit.name} phases={unit.at.phases} bus1={unit.at.bus} kV={unit.at.kv:.6g}{unit.at.conn_arg} kW=0 "
                f"pf={unit.power_factor:.12g} model=1 vminpu=0.7 vmaxpu=1.3"
            )
        units, n = self.units, len(self.units)
        self._shape = shape
        self._peak = np.array([u.peak_kw for u in units])
        self._up = np.array([u.up_kw for u in units])
        self._down = np.array([u.down_kw for u in units])
        self._index = {u.name: i for i, u in enumerate(units)}
        self._setpoint = np.full(n, np.nan)  # NaN: the baseline
        self._owed = np.zeros(n)  # at the last step's end
        self._shift = read_only(np.zeros(n))  # this step's
        self._kw = read_only(np.zeros(n))
        self._owed_next = self._owed

    def baseline_kw(self, k: int) -> np.ndarray:
        return self._peak * self._shape[k]

    def apply(self, k: int) -> np.ndarray | None:
        """The loads' kW this step (the feeder writes them)."""
        if not self.units:
            return None
        base = self.baseline_kw(k)
        wanted = np.where(np.isnan(self._setpoint), 0.0, self._setpoint)
        shift = np.maximum(np.clip(wanted, -self._down, self._up), -base)
        self._shift, self._kw = read_only(shift), read_only(base + shift)
        self._owed_next = self._owed - shift * self.step_hours
        return self._kw

    def set_setpoints(self, flexible_load: dict[str, float | None]) -> None:
        """Shift in kW per unit name (+ = more consumption); None returns it to its baseline."""
        for name, shift in flexible_load.items():
            self.units[self._index[name]].setpoint_kw = None if shift is None else float(shift)
            self._setpoint[self._index[name]] = np.nan if shift is None else float(shift)

    def advance(self) -> None:
        if not self.units:
            return
        self._owed = self._owed_next
        for unit, owed, shift in zip(self.units, self._owed.tolist(), self._shift.tolist()):
            unit.owed_kwh, unit.shift_kw = owed, shift

    def readings(self, k: int) -> dict[str, np.ndarray]:
        return {"flexible_load_kw": self._kw, "flexible_load_shift_kw": self._shift,
                "flexible_load_unit_shift_kw": self._shift, "flexible_load_owed_kwh": self._owed_next}

    def state(self) -> dict:
        """Per unit: energy owed at the last step's end, this step's shift, the set-point
        (null: baseline). Nothing without units (checkpoints from before flexible loads)."""
        if not self.units:
            return {}
        rows = zip(self._owed.tolist(), self._shift.tolist(), [u.setpoint_kw for u in self.units])
        return {"flexible_load": [list(row) for row in rows]}

    def restore(self, state: dict) -> None:
        """The state; this step's consumption follows from the shift (the loads' kW in
        OpenDSS are the circuit's, grid.dss_state)."""
        rows = state.get("flexible_load", [])
        check_count(rows, self.units, "flexible_load")
        if not self.units:
            return
        owed, shift, setpoints = zip(*rows)
        self._owed = np.array(owed, dtype=float)
        self._shift = read_only(np.array(shift, dtype=float))
        self._owed_next = self._owed - self._shift * self.step_hours
        self.set_setpoints(dict(zip(self._index, setpoints)))
