"""Distributed energy resources inside one OpenDSS feeder, driven step by step.

PV systems are OpenDSS PVSystem elements: the step's irradiance sets the available
power, the inverter's kVA limits the output, and an active-power cap (curtailment)
and a reactive-power set-point can be given from outside. Batteries are OpenDSS
Storage elements dispatched externally; their state of charge is kept here, exactly:
charging stores P * eta_charge * dt, discharging draws P / eta_discharge * dt, and the
power is clipped so the SOC stays within its limits. EV chargers are loads with
charging sessions; the energy each EV still needs is tracked.

Placement is by penetration (a share of the feeder's peak load, at seeded random load
buses) or by an explicit bus list. Local controls (regulators, capacitor controls,
Volt-VAR and Volt-Watt inverter functions) are OpenDSS control elements switched on
per scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from grid.setpoints import Setpoints


@dataclass
class Connection:
    """Where a DER connects: bus, phases (e.g. "7.1" or "48.1.2.3"), and its rated kV."""

    bus: str
    phases: int
    kv: float


@dataclass
class PVUnit:
    name: str
    at: Connection
    pmpp_kw: float
    kva: float
    p_cap_pu: float = 1.0  # active-power cap as a share of Pmpp (curtailment); 1 = none
    q_kvar: float = 0.0  # reactive set-point when no inverter function controls Q


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


def _in_window(hour: float, window: tuple[float, float]) -> bool:
    """Whether a local hour falls in [start, end), a window that may wrap midnight (22 -> 6)."""
    start, end = window
    return start <= hour < end if start <= end else hour >= start or hour < end


def _window_hours(window: tuple[float, float]) -> float:
    return (window[1] - window[0]) % 24 or 24.0


def time_of_day_dispatch(battery: BatteryUnit, hour: float, charge_hours: tuple[float, float],
                         discharge_hours: tuple[float, float]) -> float:
    """A simple default schedule: charge in one window, discharge in another (either may wrap
    midnight), each spread evenly so a full cycle fits its window."""
    usable = (battery.soc_max - battery.soc_min) * battery.kwh_rated
    if _in_window(hour, charge_hours):
        return -min(battery.kw_rated, usable / (battery.eta_charge * _window_hours(charge_hours)))
    if _in_window(hour, discharge_hours):
        return min(battery.kw_rated, usable * battery.eta_discharge / _window_hours(discharge_hours))
    return 0.0


# IEEE 1547-2018 category B default curves (per-unit voltage -> per-unit reactive power / active power).
VOLT_VAR_CURVE = ((0.5, 0.44), (0.92, 0.44), (0.98, 0.0), (1.02, 0.0), (1.08, -0.44), (1.5, -0.44))
VOLT_WATT_CURVE = ((0.5, 1.0), (1.06, 1.0), (1.10, 0.2), (1.5, 0.2))


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
        dss.Circuit.SetActiveBus(bus_name)
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


def _read_only(values: np.ndarray) -> np.ndarray:
    """The fleet's state handed out without copies: callers cannot change it."""
    values.flags.writeable = False
    return values


_NONE = _read_only(np.empty(0))


def _curve(dss, name: str, points: tuple[tuple[float, float], ...]) -> None:
    xs = " ".join(f"{x:g}" for x, _ in points)
    ys = " ".join(f"{y:g}" for _, y in points)
    dss.Text.Command(f"New XYCurve.{name} npts={len(points)} Xarray=[{xs}] Yarray=[{ys}]")


class DerFleet:
    """The DERs and local controls of one feeder, and their state between steps."""

    def __init__(self, dss, alt, spec, step_hours: float, local_hours: np.ndarray, irradiance_w_m2: np.ndarray):
        self.dss = dss
        self.alt = alt
        self.step_hours = step_hours
        self.local_hours = local_hours
        self.irradiance_kw_m2 = np.asarray(irradiance_w_m2) / 1000.0
        rng = np.random.default_rng(spec.seed)
        loads = feeder_loads(dss)
        peak_kw = sum(p.kw for p in loads)
        self.pv: list[PVUnit] = []
        self.batteries: list[BatteryUnit] = []
        self.evs: list[EVCharger] = []

        pv = spec.pv
        if pv.penetration > 0:
            sites = choose_connections(dss, loads, pv.buses, pv.phases, pv.count, rng)
            pmpp = pv.penetration * peak_kw / len(sites)
            self.pv = [PVUnit(f"pv_{i}", at, pmpp, pmpp * pv.kva_ratio) for i, at in enumerate(sites)]
        for unit in self.pv:
            dss.Text.Command(
                f"New PVSystem.{unit.name} phases={unit.at.phases} bus1={unit.at.bus} kV={unit.at.kv:.6g} "
                f"kVA={unit.kva:.6g} Pmpp={unit.pmpp_kw:.6g} irradiance=0 %cutin=0 %cutout=0 pf=1 kvarMax={unit.kva:.6g}"
            )

        bat = spec.battery
        if bat.penetration > 0:
            sites = choose_connections(dss, loads, bat.buses, bat.phases, bat.count, rng)
            kw = bat.penetration * peak_kw / len(sites)
            self.batteries = [
                BatteryUnit(f"bat_{i}", at, kw, kw * bat.hours, bat.efficiency_charge, bat.efficiency_discharge,
                            bat.soc_min, bat.soc_max, bat.soc_initial)
                for i, at in enumerate(sites)
            ]
        self.battery_spec = bat
        for unit in self.batteries:
            # OpenDSS sees the terminal power only; losses and SOC are booked here.
            dss.Text.Command(
                f"New Storage.{unit.name} phases={unit.at.phases} bus1={unit.at.bus} kV={unit.at.kv:.6g} "
                f"kWrated={unit.kw_rated:.6g} kWhrated={unit.kwh_rated:.6g} kVA={unit.kw_rated:.6g} "
                f"%stored={unit.soc * 100:.6g} %reserve=0 %EffCharge=100 %EffDischarge=100 %IdlingkW=0 "
                f"DispMode=External State=IDLING kW=0"
            )
        self._pv_sent: dict[str, tuple[float, float]] = {unit.name: (1.0, 0.0) for unit in self.pv}
        self._pv_setpoints_changed = False
        self._pv_pmpp = np.array([u.pmpp_kw for u in self.pv])
        self._irradiance_sent = 0.0  # what the PV systems hold now (created with none)
        self._pvsystems = dss.PVsystems

        # Every step handles all batteries at once: their parameters and state as arrays, and the
        # units kept up to date from them (the same arithmetic, element by element, as the units').
        units = self.batteries
        self._bat_kw_rated = np.array([u.kw_rated for u in units])
        self._bat_kwh = np.array([u.kwh_rated for u in units])
        self._bat_eta_charge = np.array([u.eta_charge for u in units])
        self._bat_eta_discharge = np.array([u.eta_discharge for u in units])
        self._bat_soc_min = np.array([u.soc_min for u in units])
        self._bat_soc_max = np.array([u.soc_max for u in units])
        self._bat_soc = _read_only(np.array([u.soc for u in units]))
        self._bat_soc_next = self._bat_soc  # at the end of the step as dispatched
        self._bat_idle = _read_only(np.zeros(len(units)))
        self._bat_p = _read_only(np.zeros(len(units)))  # not the idle array: the first step sends all
        self._bat_setpoint = np.full(len(units), np.nan)  # NaN: the default schedule
        self._bat_index = {u.name: i for i, u in enumerate(units)}
        self._bat_any_setpoint = False
        self._bat_sent = np.full(len(units), np.nan)  # kW each Storage element was last given
        # The time-of-day schedule's powers, constant per battery (time_of_day_dispatch's arithmetic).
        usable = (self._bat_soc_max - self._bat_soc_min) * self._bat_kwh
        self._bat_charge_kw = -np.minimum(self._bat_kw_rated, usable / (self._bat_eta_charge * _window_hours(bat.charge_hours)))
        self._bat_discharge_kw = np.minimum(self._bat_kw_rated, usable * self._bat_eta_discharge / _window_hours(bat.discharge_hours))

        ev = spec.ev
        if ev.penetration > 0:
            n = max(1, int(round(ev.penetration * peak_kw / ev.charger_kw)))
            sites = choose_connections(dss, loads, None, "single", n, rng)
            steps_per_day = int(round(24 / step_hours))
            n_steps = len(local_hours)
            # Days start at local midnight, which may lie before the run's first step.
            first_midnight = -int(round((local_hours[0] % 24) / step_hours))
            for i, at in enumerate(sites):
                sessions = []
                for day_start in range(first_midnight - steps_per_day, n_steps, steps_per_day):
                    arrive = day_start + int(rng.uniform(*ev.arrival_hours) / step_hours)
                    depart = day_start + steps_per_day + int(rng.uniform(*ev.departure_hours) / step_hours)
                    sessions.append(EVSession(arrive, depart, float(rng.uniform(*ev.energy_kwh))))
                self.evs.append(EVCharger(f"ev_{i}", at, ev.charger_kw, sessions))
        for unit in self.evs:
            dss.Text.Command(f"New Load.{unit.name} phases=1 bus1={unit.at.bus} kV={unit.at.kv:.6g} kW=0 pf=1 model=1 vminpu=0.7")

        self._configure_controls(spec.controls)
        self.regulators = list(dss.RegControls.AllNames()) if dss.RegControls.Count() else []
        self.capacitors = list(dss.Capacitors.AllNames()) if dss.Capacitors.Count() else []
        self._capacitors_switch = dss.CapControls.Count() > 0
        self._capacitor_steps: np.ndarray | None = None if self.capacitors else _NONE

    def _configure_controls(self, controls) -> None:
        dss = self.dss
        if not controls.regulators and dss.RegControls.Count():
            for name in dss.RegControls.AllNames():
                dss.Text.Command(f"RegControl.{name}.enabled=no")
        if controls.capacitors and dss.Capacitors.Count():
            for name in dss.Capacitors.AllNames():
                dss.Circuit.SetActiveElement(f"Capacitor.{name}")
                bus = dss.CktElement.BusNames()[0].split(".")[0]
                dss.Circuit.SetActiveBus(bus)
                volts = dss.Bus.kVBase() * 1000.0
                # Voltage control on the bank's own terminal (PT ratio 1, so settings are in volts).
                dss.Text.Command(
                    f"New CapControl.cc_{name} Capacitor={name} Element=Capacitor.{name} Terminal=1 type=voltage "
                    f"PTratio=1 ON={0.98 * volts:.6g} OFF={1.04 * volts:.6g} Delay=0 DelayOFF=0"
                )
        self.inverter_controls = bool((controls.volt_var or controls.volt_watt) and self.pv)
        if self.inverter_controls:
            modes = []
            if controls.volt_var:
                _curve(dss, "tandem_volt_var", VOLT_VAR_CURVE)
                modes.append("vvc_curve1=tandem_volt_var")
            if controls.volt_watt:
                _curve(dss, "tandem_volt_watt", VOLT_WATT_CURVE)
                modes.append("voltwatt_curve=tandem_volt_watt VoltwattYAxis=PMPPPU")
            mode = "CombiMode=VV_VW" if controls.volt_var and controls.volt_watt else (
                "Mode=VOLTVAR" if controls.volt_var else "Mode=VOLTWATT")
            names = " ".join(f"PVSystem.{u.name}" for u in self.pv)
            dss.Text.Command(
                f"New InvControl.tandem_inverters DERList=[{names}] {mode} {' '.join(modes)} "
                "voltage_curvex_ref=rated RefReactivePower=VARMAX EventLog=no"
            )

    # -- before the solve -------------------------------------------------
    def apply(self, k: int) -> np.ndarray:
        """Irradiance, battery dispatch and EV charging of step k; returns the EV chargers' kW
        (loads, written by the feeder with its own loads)."""
        irradiance = float(self.irradiance_kw_m2[k])
        if self.pv and irradiance != self._irradiance_sent:  # the night's zeros are written once
            # The classic interface keeps the Y matrix valid (a batch write would not); its C
            # functions directly, one error check for the lot: 60 writes cost 25 us through the wrappers.
            pvsystems = self._pvsystems
            lib = pvsystems._lib
            lib.PVSystems_Get_First()  # creation order, as self.pv
            for _ in self.pv:
                lib.PVSystems_Set_Irradiance(irradiance)
                lib.PVSystems_Get_Next()
            pvsystems._check_for_error()
            self._irradiance_sent = irradiance
        if self._pv_setpoints_changed:
            for unit in self.pv:
                sent = (unit.p_cap_pu, unit.q_kvar)
                if self._pv_sent[unit.name] != sent:  # text commands only for the units that changed
                    self.dss.Text.Command(f"Edit PVSystem.{unit.name} %Pmpp={unit.p_cap_pu * 100:.12g} kvar={unit.q_kvar:.12g}")
                    self._pv_sent[unit.name] = sent
            self._pv_setpoints_changed = False
        if self.batteries:
            self._dispatch_batteries(float(self.local_hours[k]))
        if not self.evs:
            return np.empty(0)
        return np.array([unit.charge(k, self.step_hours) for unit in self.evs])

    def _dispatch_batteries(self, hour: float) -> None:
        """Every battery's power this step (set-point, else schedule; BatteryUnit.feasible_power
        for all at once), the SOC it leads to, and a Storage edit for each one that changed."""
        spec, hours, soc = self.battery_spec, self.step_hours, self._bat_soc
        if spec.schedule == "time_of_day" and _in_window(hour, spec.charge_hours):
            wanted = self._bat_charge_kw
        elif spec.schedule == "time_of_day" and _in_window(hour, spec.discharge_hours):
            wanted = self._bat_discharge_kw
        elif self._bat_any_setpoint:
            wanted = np.zeros(len(soc))
        else:  # all idle, as the arithmetic below would find: nothing moves
            if self._bat_p is not self._bat_idle or np.isnan(self._bat_sent).any():
                self._bat_p, self._bat_soc_next = self._bat_idle, soc
                self._send_batteries()
            return
        if self._bat_any_setpoint:
            wanted = np.where(np.isnan(self._bat_setpoint), wanted, self._bat_setpoint)
        p = np.minimum(np.maximum(wanted, -self._bat_kw_rated), self._bat_kw_rated)
        discharge_limit = (soc - self._bat_soc_min) * self._bat_kwh * self._bat_eta_discharge / hours
        charge_limit = -(self._bat_soc_max - soc) * self._bat_kwh / (self._bat_eta_charge * hours)
        p = np.where(p > 0, np.minimum(p, discharge_limit), np.where(p < 0, np.maximum(p, charge_limit), p))
        p = np.where(wanted >= 0, np.maximum(p, 0.0), np.minimum(p, 0.0))
        stored = np.where(p >= 0, -p / self._bat_eta_discharge * hours, -p * self._bat_eta_charge * hours)
        self._bat_p, self._bat_soc_next = _read_only(p), _read_only(soc + stored / self._bat_kwh)
        self._send_batteries()

    def _send_batteries(self) -> None:
        """The units' dispatch from the arrays; a Storage edit for each battery whose power changed."""
        p = self._bat_p
        for unit, p_kw in zip(self.batteries, p.tolist()):
            unit.p_kw = p_kw
        changed = np.flatnonzero(p != self._bat_sent)  # the first step writes them all
        for i in changed.tolist():
            unit = self.batteries[i]
            state = "DISCHARGING" if unit.p_kw > 0 else "CHARGING" if unit.p_kw < 0 else "IDLING"
            self.dss.Text.Command(f"Edit Storage.{unit.name} State={state} kW={unit.p_kw:.12g} kvar={unit.q_kvar:.12g}")
        self._bat_sent[changed] = p[changed]

    def set_setpoints(self, setpoints: Setpoints) -> None:
        """Set-points from outside, kept until changed: PV (active-power cap as a share of Pmpp,
        kvar), battery kW (+ discharge; None returns to the schedule) and kvar, EV charging kW.
        Kinds this fleet has no units of (dg, flexible_load) are ignored."""
        pv, batteries, battery_kvar, evs = setpoints.pv, setpoints.battery_kw(), setpoints.battery_kvar(), setpoints.ev
        by_name = {u.name: u for u in [*self.pv, *self.batteries, *self.evs]}
        unknown = [n for n in [*pv, *batteries, *evs] if n not in by_name]
        if unknown:
            raise KeyError(f"unknown DER {unknown[0]!r}")
        for name, (cap, q) in pv.items():
            by_name[name].p_cap_pu, by_name[name].q_kvar = float(np.clip(cap, 0.0, 1.0)), float(q)
            self._pv_setpoints_changed = True
        for name, p in batteries.items():
            by_name[name].setpoint_kw = p
            self._bat_setpoint[self._bat_index[name]] = np.nan if p is None else float(p)
            self._bat_any_setpoint = not np.isnan(self._bat_setpoint).all()
        for name, q in battery_kvar.items():
            by_name[name].q_kvar = float(q)
            self._bat_sent[self._bat_index[name]] = np.nan  # Q alone changed: edit the element again
        for name, p in evs.items():
            by_name[name].setpoint_kw = max(0.0, p)

    # -- after the solve --------------------------------------------------
    def advance(self) -> None:
        """Book the step's energy: battery SOC and the energy EVs still need."""
        if self._bat_soc_next is not self._bat_soc:  # idle steps leave the SOC as it was
            self._bat_soc = self._bat_soc_next
            for unit, soc in zip(self.batteries, self._bat_soc.tolist()):
                unit.soc = soc
        for unit in self.evs:
            unit.book(self.step_hours)

    def _read_capacitor_steps(self) -> list[int]:
        """Energised steps of each capacitor bank; the classic interface, by index (all banks,
        enabled or not), takes a fifth of AltDSS's time for a few banks."""
        capacitors = self.dss.Capacitors
        steps = []
        for i in range(1, len(self.capacitors) + 1):
            capacitors.Idx(i)
            steps.append(sum(capacitors.States()))
        return steps

    # -- checkpoints --------------------------------------------------------
    def state(self) -> dict:
        """Everything the fleet carries from step to step, taken after a solve and before
        `advance` (so the step's energy is booked again on restore): JSON-ready floats."""
        setpoints = [None if np.isnan(v) else float(v) for v in self._bat_setpoint.tolist()]
        return {
            "battery": [[float(soc), u.p_kw, u.q_kvar, sp] for u, soc, sp in zip(self.batteries, self._bat_soc.tolist(), setpoints)],
            "battery_soc_next": [float(v) for v in np.asarray(self._bat_soc_next).tolist()],
            "pv": [[u.p_cap_pu, u.q_kvar] for u in self.pv],
            "ev": [[u.owed_kwh, u.p_kw, u.setpoint_kw] for u in self.evs],
        }

    def restore(self, state: dict) -> None:
        """Inverse of `state` on a freshly built fleet: the Python state, and the PV and battery
        set-points written into OpenDSS again, exactly as they were."""
        counts = {"battery": len(self.batteries), "pv": len(self.pv), "ev": len(self.evs)}
        for key, n in counts.items():
            if len(state[key]) != n:
                raise ValueError(f"checkpoint holds {len(state[key])} {key} units, the feeder has {n}")
        for unit, (soc, p, q, setpoint) in zip(self.batteries, state["battery"]):
            unit.soc, unit.p_kw, unit.q_kvar, unit.setpoint_kw = soc, p, q, setpoint
        if self.batteries:
            self._bat_soc = _read_only(np.array([row[0] for row in state["battery"]], dtype=float))
            self._bat_soc_next = _read_only(np.array(state["battery_soc_next"], dtype=float))
            self._bat_setpoint = np.array([np.nan if row[3] is None else row[3] for row in state["battery"]], dtype=float)
            self._bat_any_setpoint = not np.isnan(self._bat_setpoint).all()
            self._bat_p = _read_only(np.array([row[1] for row in state["battery"]], dtype=float))
            self._bat_sent[:] = np.nan  # every Storage element is edited again
            self._send_batteries()
        for unit, (cap, q) in zip(self.pv, state["pv"]):
            unit.p_cap_pu, unit.q_kvar = cap, q
            if self._pv_sent[unit.name] != (cap, q):  # now: an edit rebuilds the admittance matrix
                self.dss.Text.Command(f"Edit PVSystem.{unit.name} %Pmpp={cap * 100:.12g} kvar={q:.12g}")
                self._pv_sent[unit.name] = (cap, q)
        for unit, (owed, p, setpoint) in zip(self.evs, state["ev"]):
            unit.owed_kwh, unit.p_kw, unit.setpoint_kw = owed, p, setpoint

    def readings(self, k: int) -> dict[str, np.ndarray]:
        """What the record needs about the DERs and controls after the solve of step k (arrays
        that belong to the fleet are read-only)."""
        pv = -self.alt.PVSystem.TotalPowers() if self.pv else np.empty(0, dtype=complex)  # delivered
        bat = -self.alt.Storage.TotalPowers() if self.batteries else np.empty(0, dtype=complex)
        taps = self.alt.RegControl.TapNum.to_array().astype(float) if self.regulators else np.empty(0)
        caps = self._capacitor_steps
        if caps is None:
            caps = _read_only(np.array(self._read_capacitor_steps(), dtype=float))
            if not self._capacitors_switch:  # without a CapControl no bank switches: read once
                self._capacitor_steps = caps
        return {
            "pv_available_kw": self._pv_pmpp * self.irradiance_kw_m2[k],
            "pv_kw": pv.real,
            "pv_kvar": pv.imag,
            "battery_kw": bat.real,
            "battery_kvar": bat.imag,
            "battery_dispatch_kw": self._bat_p,
            "battery_soc": self._bat_soc_next,  # at the step's end
            "ev_kw": np.array([u.p_kw for u in self.evs]) if self.evs else _NONE,
            "ev_owed_kwh": np.array([max(0.0, u.owed_kwh - u.p_kw * self.step_hours) for u in self.evs]) if self.evs else _NONE,
            "regulator_taps": taps,
            "capacitor_steps": caps,
        }
