"""Dispatchable distributed generators (diesel or gas gensets): OpenDSS Generator elements
(model 1, constant P and Q), one per unit.

A Generator rather than a negative Load: it is reported as generation by OpenDSS (its own
element class, read in one batch call), keeps the feeder's loads (and their batch writes
and checkpoint probing) to real consumption, and carries a kVA rating of its own.

The simulation enforces the physics and the operating limits; the economics (cost curve,
start-up cost) are the coordinator's. Each step, from the set-point (P, Q) or, without
one, the schedule (off, or full output within `run_hours`):

* P is clipped to [0, rating]; a negative set-point counts as 0 (stop);
* the ramp limit (`ramp_pu_per_hour` x rating per hour) bounds the change from the last
  step's output;
* with `commitment`: a unit that is on runs at least at its minimum stable output p_min
  (a set-point between 0 and p_min is raised to p_min: a positive set-point means "on");
  a start synchronises at p_min, from which the ramp limit applies; a stop ramps down to
  p_min first, then drops to 0; a started unit stays on for `min_up_hours` (at p_min or
  above), a stopped one off for `min_down_hours`. A run starts with every unit off and
  free to start;
* Q is the set-point's (0 on the schedule), clipped to the kVA circle left by P; a unit
  that is off gives no Q.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grid.ders.kind import Controller, Energy, FeederContext, Reading, SetpointPart, check_count, in_window, read_only
from grid.ders.placement import Connection


@dataclass
class DGUnit:
    name: str
    at: Connection
    kw_rated: float
    kva: float
    p_min_kw: float  # minimum stable output when on (0 without commitment)
    ramp_kw_per_hour: float | None  # None: no ramp limit
    commitment: bool
    min_up_hours: float  # 0 without commitment
    min_down_hours: float
    cost_per_mwh: list[float]  # the spec's cost curve, for the coordinator
    startup_cost: float
    p_kw: float = 0.0  # output of the last finished step: the ramp reference
    q_kvar: float = 0.0
    on: bool = False
    hours_in_state: float = 0.0  # how long it has been on (or off) at the last step's end
    setpoint: tuple[float, float] | None = None  # (kW, kvar) from outside; None: the schedule


class DgController(Controller):
    """All generators of a feeder at once, their limits and state as arrays."""

    key = "dg"
    SETPOINT = SetpointPart(dict[str, tuple[float, float] | None], (
        "`[p_kw, q_kvar]` or `null`: dispatchable generator output (clipped to its rating, kVA circle, ramp and, "
        "with commitment, minimum stable output); `null` hands the generator back to its schedule"))
    READINGS = (
        Reading("dg_kw", "kW", "distributed generation delivered", total=True, dispatched="gensets",
                energy=(Energy("dg", "net", "energy the dispatchable distributed generators delivered"),)),
        Reading("dg_kvar", "kvar", "distributed generators' reactive power delivered", total=True),
        Reading("dg_dispatch_kw", "kW", "generator output dispatched (set-point or schedule within ratings, ramp and commitment)",
                device="dg"),
    )

    def __init__(self, ctx: FeederContext, spec):
        self.dss, self.alt = ctx.dss, ctx.alt
        self.spec, self.step_hours, self.local_hours = spec, ctx.step_hours, ctx.local_hours
        self.units: list[DGUnit] = []
        if spec.penetration > 0:
            sites, kw = ctx.place(spec)
            c = spec.commitment
            self.units = [
                DGUnit(f"dg_{i}", at, kw, kw * spec.kva_ratio, spec.p_min_pu * kw if c else 0.0,
                       None if spec.ramp_pu_per_hour is None else spec.ramp_pu_per_hour * kw, c,
                       spec.min_up_hours if c else 0.0, spec.min_down_hours if c else 0.0,
                       list(spec.cost_per_mwh), spec.startup_cost if c else 0.0)
                for i, at in enumerate(sites)
            ]
        for unit in self.units:
            # Constant P and Q down to 0.7 pu (a genset's governor and exciter hold them).
            self.dss.Text.Command(
                f"New Generator.{unit.name} phases={unit.at.phases} bus1={unit.at.bus} kV={unit.at.kv:.6g}{unit.at.conn_arg} "
                f"kVA={unit.kva:.6g} kW=0 kvar=0 model=1 Vminpu=0.7 Vmaxpu=1.3"
            )
        units, n = self.units, len(self.units)
        self._rating = np.array([u.kw_rated for u in units])
        self._kva = np.array([u.kva for u in units])
        self._p_min = np.array([u.p_min_kw for u in units])
        ramp = np.array([np.inf if u.ramp_kw_per_hour is None else u.ramp_kw_per_hour for u in units])
        self._ramp_step = ramp * self.step_hours  # largest change in one step
        self._min_up = np.array([u.min_up_hours for u in units])
        self._min_down = np.array([u.min_down_hours for u in units])
        self._index = {u.name: i for i, u in enumerate(units)}
        self._setpoint_p = np.full(n, np.nan)  # NaN: the schedule
        self._setpoint_q = np.zeros(n)
        # The last finished step (the ramp reference) and this step as dispatched.
        self._p0, self._on0 = np.zeros(n), np.zeros(n, dtype=bool)
        self._hours0 = self._min_down.copy()  # off long enough to start
        self._p, self._q, self._on, self._hours = read_only(np.zeros(n)), np.zeros(n), self._on0, self._hours0
        self._sent = np.zeros((2, n))  # kW and kvar each Generator holds (created with none)

    def apply(self, k: int) -> None:
        if not self.units:
            return None
        spec = self.spec
        running = spec.schedule == "window" and in_window(float(self.local_hours[k]), spec.run_hours)
        free = np.isnan(self._setpoint_p)
        wanted_p = np.where(free, self._rating if running else 0.0, self._setpoint_p)
        wanted_q = np.where(free, 0.0, self._setpoint_q)
        p0, on0, t0, ramp, p_min = self._p0, self._on0, self._hours0, self._ramp_step, self._p_min
        # On stays on while asked to, before its minimum up time, or while ramping down to p_min.
        on = np.where(on0, (wanted_p > 0) | (t0 < self._min_up) | (p0 - ramp > p_min),
                      (wanted_p > 0) & (t0 >= self._min_down))
        level = np.where(on0, p0, p_min)  # a start synchronises at p_min
        p_on = np.clip(np.maximum(wanted_p, p_min), np.maximum(p_min, level - ramp), np.minimum(self._rating, level + ramp))
        p = np.where(on, p_on, 0.0)
        q_max = np.sqrt(np.maximum(self._kva**2 - p**2, 0.0))
        q = np.where(on, np.clip(wanted_q, -q_max, q_max), 0.0)
        self._p, self._q, self._on = read_only(p), q, on
        self._hours = np.where(on == on0, t0 + self.step_hours, self.step_hours)
        self._send()
        return None

    def _send(self) -> None:
        """A Generator edit for each unit whose P or Q changed."""
        changed = np.flatnonzero((self._p != self._sent[0]) | (self._q != self._sent[1]))
        for i in changed.tolist():
            self.dss.Text.Command(f"Edit Generator.{self.units[i].name} kW={self._p[i]:.17g} kvar={self._q[i]:.17g}")
        self._sent[0, changed], self._sent[1, changed] = self._p[changed], self._q[changed]

    def set_setpoints(self, dg: dict[str, tuple[float, float] | None]) -> None:
        """(kW, kvar) per unit name; None hands the unit back to its schedule."""
        for name, setpoint in dg.items():
            i = self._index[name]
            self.units[i].setpoint = None if setpoint is None else (float(setpoint[0]), float(setpoint[1]))
            self._setpoint_p[i] = np.nan if setpoint is None else float(setpoint[0])
            self._setpoint_q[i] = 0.0 if setpoint is None else float(setpoint[1])

    def advance(self) -> None:
        """This step's output becomes the ramp reference; time in state moves on."""
        if not self.units:
            return
        self._p0, self._on0, self._hours0 = self._p, self._on, self._hours
        for unit, p, q, on, hours in zip(self.units, self._p.tolist(), self._q.tolist(), self._on.tolist(), self._hours.tolist()):
            unit.p_kw, unit.q_kvar, unit.on, unit.hours_in_state = p, q, on, hours

    def readings(self, k: int) -> dict[str, np.ndarray]:
        # The feeder model may hold generators of its own; ours were created last.
        dg = -self.alt.Generator.TotalPowers()[-len(self.units):] if self.units else np.empty(0, dtype=complex)
        return {"dg_kw": dg.real, "dg_kvar": dg.imag, "dg_dispatch_kw": self._p}

    def state(self) -> dict:
        """Per unit: last step's output, on and hours in state; this step's P, Q, on, hours;
        the set-point (null: schedule). Nothing without units (checkpoints from before DG)."""
        if not self.units:
            return {}
        setpoints = [u.setpoint for u in self.units]
        rows = zip(self._p0.tolist(), self._on0.tolist(), self._hours0.tolist(), self._p.tolist(), self._q.tolist(),
                   self._on.tolist(), self._hours.tolist(), setpoints)
        return {"dg": [[p0, on0, t0, p, q, on, t, None if sp is None else list(sp)] for p0, on0, t0, p, q, on, t, sp in rows]}

    def restore(self, state: dict) -> None:
        """The state, and every Generator edited again with this step's output (the units'
        attributes follow at `advance`, which a restore ends with)."""
        rows = state.get("dg", [])
        check_count(rows, self.units, "dg")
        if not self.units:
            return
        columns = list(zip(*rows))
        self._p0 = np.array(columns[0], dtype=float)
        self._on0 = np.array(columns[1], dtype=bool)
        self._hours0 = np.array(columns[2], dtype=float)
        self._p, self._q = read_only(np.array(columns[3], dtype=float)), np.array(columns[4], dtype=float)
        self._on, self._hours = np.array(columns[5], dtype=bool), np.array(columns[6], dtype=float)
        self.set_setpoints({u.name: None if row[7] is None else tuple(row[7]) for u, row in zip(self.units, rows)})
        self._sent[:] = np.nan
        self._send()
