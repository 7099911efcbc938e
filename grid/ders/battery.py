"""Batteries: OpenDSS Storage elements dispatched externally. Their state of charge is kept
here, exactly: charging stores P * eta_charge * dt, discharging draws P / eta_discharge * dt,
and the power is clipped so the SOC stays within its limits. Without a set-point a battery
follows its schedule (a time-of-day cycle, or idle)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grid.ders.kind import Controller, Energy, FeederContext, Reading, SetpointPart, check_count, in_window, read_only, window_hours
from grid.ders.placement import Connection


@dataclass
class BatteryUnit:
    name: str
    at: Connection
    kw_rated: float
    kwh_rated: float
    eta_charge: float
    eta_discharge: float
    soc_min: float
    soc_max: float
    soc: float  # state of charge now, 0..1
    p_kw: float = 0.0  # dispatched this step: + discharge, - charge
    q_kvar: float = 0.0
    setpoint_kw: float | None = None  # from outside; None = the default schedule

    def feasible_power(self, p_kw: float, hours: float) -> float:
        """The closest power to p_kw that respects the rating and keeps the SOC within its limits."""
        p = min(max(float(p_kw), -self.kw_rated), self.kw_rated)
        if p > 0:  # discharging draws p / eta from storage
            p = min(p, (self.soc - self.soc_min) * self.kwh_rated * self.eta_discharge / hours)
        elif p < 0:  # charging stores |p| * eta
            p = max(p, -(self.soc_max - self.soc) * self.kwh_rated / (self.eta_charge * hours))
        return max(p, 0.0) if p_kw >= 0 else min(p, 0.0)

    def soc_after(self, hours: float) -> float:
        """The SOC at the end of a step dispatched at p_kw."""
        if self.p_kw >= 0:
            stored = -self.p_kw / self.eta_discharge * hours
        else:
            stored = -self.p_kw * self.eta_charge * hours
        return self.soc + stored / self.kwh_rated

    def advance(self, hours: float) -> None:
        """Book the step's energy into the SOC."""
        self.soc = self.soc_after(hours)


def time_of_day_dispatch(battery: BatteryUnit, hour: float, charge_hours: tuple[float, float],
                         discharge_hours: tuple[float, float]) -> float:
    """A simple default schedule: charge in one window, discharge in another (either may wrap
    midnight), each spread evenly so a full cycle fits its window."""
    usable = (battery.soc_max - battery.soc_min) * battery.kwh_rated
    if in_window(hour, charge_hours):
        return -min(battery.kw_rated, usable / (battery.eta_charge * window_hours(charge_hours)))
    if in_window(hour, discharge_hours):
        return min(battery.kw_rated, usable * battery.eta_discharge / window_hours(discharge_hours))
    return 0.0


class BatteryController(Controller):
    """All batteries of a feeder at once: their parameters and state as arrays, and the units
    kept up to date from them (the same arithmetic, element by element, as BatteryUnit's)."""

    key = "battery"
    SETPOINT = SetpointPart(dict[str, float | tuple[float, float] | None], (
        "`p_kw`, `[p_kw, q_kvar]` or `null`: battery power (+ discharging) replacing its schedule, with "
        "reactive power; `null` hands the battery back to its schedule"))
    READINGS = (
        Reading("battery_kw", "kW", "battery power into the grid (+ discharging)", total=True,
                meaning="battery active power at the terminals, from OpenDSS (+ discharging into the feeder, − charging); equals Σ `battery_dispatch_kw` within solver tolerance",
                energy=(Energy("battery_throughput", "abs", "charged + discharged energy at the grid terminals (|feeders/battery_kw|, net per feeder)"),
                        Energy("battery_discharged", "positive", "battery energy into the grid"),
                        Energy("battery_charged", "negative", "battery energy from the grid"))),
        Reading("battery_kvar", "kvar", "battery reactive power into the grid", total=True,
                meaning="battery reactive power (+ injecting; non-zero only with reactive set-points from a coordinator)"),
        Reading("battery_soc", "pu", "state of charge at the step's end", device="battery",
                meaning="state of charge of each battery at the **end** of the step (after the step's dispatch is booked)"),
        Reading("battery_dispatch_kw", "kW", "dispatched power (+ discharging)", device="battery",
                meaning="power dispatched to each battery in the step after clipping to rating and SOC limits (+ discharging)"),
    )

    def __init__(self, ctx: FeederContext, spec):
        self.dss, self.alt = ctx.dss, ctx.alt
        self.spec, self.step_hours, self.local_hours = spec, ctx.step_hours, ctx.local_hours
        self.units: list[BatteryUnit] = []
        if spec.penetration > 0:
            sites, kw = ctx.place(spec)
            self.units = [
                BatteryUnit(f"bat_{i}", at, kw, kw * spec.hours, spec.efficiency_charge, spec.efficiency_discharge,
                            spec.soc_min, spec.soc_max, spec.soc_initial)
                for i, at in enumerate(sites)
            ]
        for unit in self.units:
            # OpenDSS sees the terminal power only; losses and SOC are booked here.
            self.dss.Text.Command(
                f"New Storage.{unit.name} phases={unit.at.phases} bus1={unit.at.bus} kV={unit.at.kv:.6g}{unit.at.conn_arg} "
                f"kWrated={unit.kw_rated:.6g} kWhrated={unit.kwh_rated:.6g} kVA={unit.kw_rated:.6g} "
                f"%stored={unit.soc * 100:.6g} %reserve=0 %EffCharge=100 %EffDischarge=100 %IdlingkW=0 "
                f"DispMode=External State=IDLING kW=0"
            )
        units = self.units
        self._kw_rated = np.array([u.kw_rated for u in units])
        self._kwh = np.array([u.kwh_rated for u in units])
        self._eta_charge = np.array([u.eta_charge for u in units])
        self._eta_discharge = np.array([u.eta_discharge for u in units])
        self._soc_min = np.array([u.soc_min for u in units])
        self._soc_max = np.array([u.soc_max for u in units])
        self._soc = read_only(np.array([u.soc for u in units]))
        self._soc_next = self._soc  # at the end of the step as dispatched
        self._idle = read_only(np.zeros(len(units)))
        self._p = read_only(np.zeros(len(units)))  # not the idle array: the first step sends all
        self._setpoint = np.full(len(units), np.nan)  # NaN: the default schedule
        self._index = {u.name: i for i, u in enumerate(units)}
        self._any_setpoint = False
        self._sent = np.full(len(units), np.nan)  # kW each Storage element was last given
        # The time-of-day schedule's powers, constant per battery (time_of_day_dispatch's arithmetic).
        usable = (self._soc_max - self._soc_min) * self._kwh
        self._charge_kw = -np.minimum(self._kw_rated, usable / (self._eta_charge * window_hours(spec.charge_hours)))
        self._discharge_kw = np.minimum(self._kw_rated, usable * self._eta_discharge / window_hours(spec.discharge_hours))

    def apply(self, k: int) -> None:
        """Every battery's power this step (set-point, else schedule; BatteryUnit.feasible_power
        for all at once), the SOC it leads to, and a Storage edit for each one that changed."""
        if not self.units:
            return None
        hour = float(self.local_hours[k])
        spec, hours, soc = self.spec, self.step_hours, self._soc
        if spec.schedule == "time_of_day" and in_window(hour, spec.charge_hours):
            wanted = self._charge_kw
        elif spec.schedule == "time_of_day" and in_window(hour, spec.discharge_hours):
            wanted = self._discharge_kw
        elif self._any_setpoint:
            wanted = np.zeros(len(soc))
        else:  # all idle, as the arithmetic below would find: nothing moves
            if self._p is not self._idle or np.isnan(self._sent).any():
                self._p, self._soc_next = self._idle, soc
                self._send()
            return None
        if self._any_setpoint:
            wanted = np.where(np.isnan(self._setpoint), wanted, self._setpoint)
        p = np.minimum(np.maximum(wanted, -self._kw_rated), self._kw_rated)
        discharge_limit = (soc - self._soc_min) * self._kwh * self._eta_discharge / hours
        charge_limit = -(self._soc_max - soc) * self._kwh / (self._eta_charge * hours)
        p = np.where(p > 0, np.minimum(p, discharge_limit), np.where(p < 0, np.maximum(p, charge_limit), p))
        p = np.where(wanted >= 0, np.maximum(p, 0.0), np.minimum(p, 0.0))
        stored = np.where(p >= 0, -p / self._eta_discharge * hours, -p * self._eta_charge * hours)
        self._p, self._soc_next = read_only(p), read_only(soc + stored / self._kwh)
        self._send()
        return None

    def _send(self) -> None:
        """The units' dispatch from the arrays; a Storage edit for each battery whose power changed."""
        p = self._p
        for unit, p_kw in zip(self.units, p.tolist()):
            unit.p_kw = p_kw
        changed = np.flatnonzero(p != self._sent)  # the first step writes them all
        for i in changed.tolist():
            unit = self.units[i]
            state = "DISCHARGING" if unit.p_kw > 0 else "CHARGING" if unit.p_kw < 0 else "IDLING"
            self.dss.Text.Command(f"Edit Storage.{unit.name} State={state} kW={unit.p_kw:.12g} kvar={unit.q_kvar:.12g}")
        self._sent[changed] = p[changed]

    def set_setpoints(self, part: dict[str, float | tuple[float, float] | None]) -> None:
        """Per unit name kW (+ discharge; None returns to the schedule) or (kW, kvar)."""
        batteries = {name: v[0] if isinstance(v, tuple) else v for name, v in part.items()}
        battery_kvar = {name: v[1] for name, v in part.items() if isinstance(v, tuple)}
        for name, p in batteries.items():
            self.units[self._index[name]].setpoint_kw = p
            self._setpoint[self._index[name]] = np.nan if p is None else float(p)
            self._any_setpoint = not np.isnan(self._setpoint).all()
        for name, q in battery_kvar.items():
            self.units[self._index[name]].q_kvar = float(q)
            self._sent[self._index[name]] = np.nan  # Q alone changed: edit the element again

    def advance(self) -> None:
        if self._soc_next is not self._soc:  # idle steps leave the SOC as it was
            self._soc = self._soc_next
            for unit, soc in zip(self.units, self._soc.tolist()):
                unit.soc = soc

    def readings(self, k: int) -> dict[str, np.ndarray]:
        bat = -self.alt.Storage.TotalPowers() if self.units else np.empty(0, dtype=complex)
        return {
            "battery_kw": bat.real,
            "battery_kvar": bat.imag,
            "battery_soc": self._soc_next,  # at the step's end
            "battery_dispatch_kw": self._p,
        }

    def state(self) -> dict:
        setpoints = [None if np.isnan(v) else float(v) for v in self._setpoint.tolist()]
        return {
            "battery": [[float(soc), u.p_kw, u.q_kvar, sp] for u, soc, sp in zip(self.units, self._soc.tolist(), setpoints)],
            "battery_soc_next": [float(v) for v in np.asarray(self._soc_next).tolist()],
        }

    def restore(self, state: dict) -> None:
        """The SOC and set-points, and every Storage element edited again, exactly as it was."""
        check_count(state["battery"], self.units, "battery")
        for unit, (soc, p, q, setpoint) in zip(self.units, state["battery"]):
            unit.soc, unit.p_kw, unit.q_kvar, unit.setpoint_kw = soc, p, q, setpoint
        if self.units:
            self._soc = read_only(np.array([row[0] for row in state["battery"]], dtype=float))
            self._soc_next = read_only(np.array(state["battery_soc_next"], dtype=float))
            self._setpoint = np.array([np.nan if row[3] is None else row[3] for row in state["battery"]], dtype=float)
            self._any_setpoint = not np.isnan(self._setpoint).all()
            self._p = read_only(np.array([row[1] for row in state["battery"]], dtype=float))
            self._sent[:] = np.nan  # every Storage element is edited again
            self._send()
