"""EV chargers: single-phase loads with one charging session a day; the energy each EV still
needs is tracked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from grid.ders.kind import NONE, Controller, Energy, FeederContext, Reading, SetpointPart, check_count
from grid.ders.placement import Connection, choose_connections


@dataclass
class EVSession:
    arrive_step: int
    depart_step: int
    energy_kwh: float


@dataclass
class EVCharger:
    name: str
    at: Connection
    max_kw: float
    sessions: list[EVSession] = field(default_factory=list)
    owed_kwh: float = 0.0  # energy the connected EV still needs
    p_kw: float = 0.0
    setpoint_kw: float | None = None  # from outside; None = charge as fast as allowed

    def plugged(self, k: int) -> EVSession | None:
        for s in self.sessions:
            if s.arrive_step <= k < s.depart_step:
                return s
        return None

    def charge(self, k: int, step_hours: float) -> float:
        """Set and return the charging power of step k: as fast as the set-point (or the
        charger) allows until the connected EV has its energy. A session's energy is owed
        from its arrival step; an EV that left owes nothing."""
        session = self.plugged(k)
        if session is not None and self.owed_kwh == 0.0 and session.arrive_step == k:
            self.owed_kwh = session.energy_kwh
        if session is None:
            self.owed_kwh = 0.0
        limit = self.max_kw if self.setpoint_kw is None else min(self.setpoint_kw, self.max_kw)
        self.p_kw = min(limit, self.owed_kwh / step_hours) if session is not None else 0.0
        return self.p_kw

    def book(self, step_hours: float) -> None:
        """The step's energy is delivered."""
        self.owed_kwh = max(0.0, self.owed_kwh - self.p_kw * step_hours)


class EvController(Controller):
    """All EV chargers of a feeder: loads whose kW the feeder writes with its own."""

    key = "ev"
    SETPOINT = SetpointPart(dict[str, float], (
        "`p_kw`: EV charging power limit (negative counts as 0)"))
    READINGS = (
        Reading("ev_kw", "kW", "EV charging power", total=True,
                meaning="EV charging power of all chargers", energy=(Energy("ev", "net", "EV charging energy"),)),
        Reading("ev_owed_kwh", "kWh", "energy the connected EVs still need at the step's end", total=True,
                meaning="energy the connected EVs still need at the end of the step (energy left at departure is dropped)"),
    )

    def __init__(self, ctx: FeederContext, spec):
        self.step_hours = ctx.step_hours
        self.units: list[EVCharger] = []
        if spec.penetration > 0:
            step_hours, local_hours, rng = ctx.step_hours, ctx.local_hours, ctx.rng
            n = max(1, int(round(spec.penetration * ctx.peak_kw / spec.charger_kw)))
            sites = choose_connections(ctx.dss, ctx.loads, None, "single", n, rng)
            steps_per_day = int(round(24 / step_hours))
            n_steps = len(local_hours)
            # Days start at local midnight, which may lie before the run's first step.
            first_midnight = -int(round((local_hours[0] % 24) / step_hours))
            for i, at in enumerate(sites):
                sessions = []
                for day_start in range(first_midnight - steps_per_day, n_steps, steps_per_day):
                    arrive = day_start + int(rng.uniform(*spec.arrival_hours) / step_hours)
                    depart = day_start + steps_per_day + int(rng.uniform(*spec.departure_hours) / step_hours)
                    sessions.append(EVSession(arrive, depart, float(rng.uniform(*spec.energy_kwh))))
                self.units.append(EVCharger(f"ev_{i}", at, spec.charger_kw, sessions))
        for unit in self.units:
            ctx.dss.Text.Command(f"New Load.{unit.name} phases=1 bus1={unit.at.bus} kV={unit.at.kv:.6g} kW=0 pf=1 model=1 vminpu=0.7")

    def apply(self, k: int) -> np.ndarray | None:
        """The chargers' kW this step (loads: the feeder writes them)."""
        if not self.units:
            return None
        return np.array([unit.charge(k, self.step_hours) for unit in self.units])

    def set_setpoints(self, evs: dict[str, float]) -> None:
        """Charging kW limit per unit name (negative counts as 0)."""
        by_name = {u.name: u for u in self.units}
        for name, p in evs.items():
            by_name[name].setpoint_kw = max(0.0, p)

    def advance(self) -> None:
        for unit in self.units:
            unit.book(self.step_hours)

    def readings(self, k: int) -> dict[str, np.ndarray]:
        if not self.units:
            return {"ev_kw": NONE, "ev_owed_kwh": NONE}
        return {
            "ev_kw": np.array([u.p_kw for u in self.units]),
            "ev_owed_kwh": np.array([max(0.0, u.owed_kwh - u.p_kw * self.step_hours) for u in self.units]),
        }

    def state(self) -> dict:
        return {"ev": [[u.owed_kwh, u.p_kw, u.setpoint_kw] for u in self.units]}

    def restore(self, state: dict) -> None:
        check_count(state["ev"], self.units, "ev")
        for unit, (owed, p, setpoint) in zip(self.units, state["ev"]):
            unit.owed_kwh, unit.p_kw, unit.setpoint_kw = owed, p, setpoint
