"""Distributed energy resources on feeder buses, for the look-ahead problem.

Each unit gets its own pyomo Block (under the feeder's block) with its variables, its
constraints and what it feeds into the grid, `p_kw[t]` and `q_kvar[t]` (Expressions,
kW and kvar, + = into the grid), spread evenly over the unit's phases by
`der_injections` for the LinDist3Flow balance.

* PV: 0 <= P <= available[t] (mutable forecast), |Q| <= q_max and the inverter's kVA
  circle as an inscribed polygon (vertices on the circle, so P = kVA stays reachable).
* Batteries: charge and discharge as separate variables; SOC (share of kWh) at the end
  of period t: soc[t] = soc[t-1] + (eta_c p_ch - p_dis / eta_d) dt / kWh, from the
  measured soc0, the bookkeeping of `grid.ders.BatteryUnit`; SOC bounds; a
  terminal SOC target with a penalised shortfall; no simultaneous charge and discharge
  through a binary u[t] (p_ch <= kW u, p_dis <= kW (1 - u)), or its LP relaxation
  u in [0, 1] (then charging and discharging at once only pays when dumping energy
  does, which degradation cost and efficiency losses make rare; `centralized` can check
  an LP solution and re-solve as a MIP only when that happens).
* Flexible loads: baseline[t] (mutable) shifted up or down within per-period limits,
  energy-neutral over the horizon.
* EV chargers: 0 <= P <= max_kW x plugged[t], energy delivered over the horizon >=
  the energy required (mutable, penalised shortfall).

Where a unit sits: "bus.phase" (single-phase), "bus.1.2" or "bus" (all phases of the bus).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from coordination.distribution import polygon_sides
from coordination.network_data import FeederData


@dataclass
class PVData:
    name: str
    at: str  # "bus.phase", "bus.1.2.3" or "bus"
    kva: float  # inverter rating
    pmpp_kw: float
    q_max_kvar: float | None = None  # reactive capability; None = the inverter's kVA
    available_kw: float = 0.0  # initial forecast of the available power


@dataclass
class BatteryData:
    name: str
    at: str
    kw_rated: float
    kwh_rated: float
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    soc_min: float = 0.1
    soc_max: float = 0.95
    soc_initial: float = 0.5
    soc_target: float | None = None  # at the end of the horizon; None = soc_initial
    kva: float | None = None  # inverter rating; None = kw_rated (as `DerFleet` builds Storage elements)
    reactive: bool = True  # whether Q is a decision


@dataclass
class FlexibleLoadData:
    name: str
    at: str
    baseline_kw: float  # initial forecast
    up_kw: float  # largest increase above the baseline per period
    down_kw: float  # largest decrease below the baseline per period
    q_per_p: float = 0.0  # kvar per kW (the load's power factor)


@dataclass
class EVData:
    name: str
    at: str
    max_kw: float


def parse_connection(at: str, data: FeederData) -> tuple[str, tuple[int, ...]]:
    """'48' -> ('48', all phases of 48); '7.1' -> ('7', (1,)); '48.1.2' -> ('48', (1, 2))."""
    bus, *nodes = at.lower().split(".")
    if bus not in data.buses:
        raise ValueError(f"feeder {data.name}: unknown bus {bus!r} for a DER at {at!r}")
    phases = tuple(int(n) for n in nodes if n != "0") or data.buses[bus].phases
    missing = set(phases) - set(data.buses[bus].phases)
    if missing:
        raise ValueError(f"feeder {data.name}: bus {bus} has no phase {sorted(missing)} for a DER at {at!r}")
    return bus, phases


def _inverter_polygon(d: pyo.Block, p, q, kva: float, sides: int, half: bool) -> None:
    """P cos a + Q sin a <= r kVA on each polygon side (see `distribution.polygon_sides`)."""
    polygon = polygon_sides(sides, half=half)
    d.sides = pyo.Set(initialize=range(len(polygon)), ordered=True)
    d.kva_limit = pyo.Constraint(d.sides, d.T, rule=lambda _, k, t: polygon[k][0] * p(t) + polygon[k][1] * q(t) <= polygon[k][2] * kva)


# -- PV ------------------------------------------------------------------------------------


def variables_pv(d: pyo.Block, unit: PVData, periods: Iterable[int]) -> None:
    d.T = pyo.Set(initialize=list(periods), ordered=True)
    d.available = pyo.Param(d.T, mutable=True, initialize=unit.available_kw)
    q_max = unit.kva if unit.q_max_kvar is None else unit.q_max_kvar
    d.p = pyo.Var(d.T, bounds=(0.0, unit.kva))
    d.q = pyo.Var(d.T, bounds=(-q_max, q_max))


def constraints_pv(d: pyo.Block, unit: PVData, sides: int = 8) -> None:
    d.p_available = pyo.Constraint(d.T, rule=lambda _, t: d.p[t] <= d.available[t])
    _inverter_polygon(d, lambda t: d.p[t], lambda t: d.q[t], unit.kva, sides, half=True)
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: d.p[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: d.q[t])


def objective_pv(d: pyo.Block, dt_hours: float) -> None:
    """d.curtailed_kwh: available energy not used over the horizon; d.reactive_kvarh: see `reactive_use`."""
    d.curtailed_kwh = pyo.Expression(expr=dt_hours * pyo.quicksum(d.available[t] - d.p[t] for t in d.T))
    reactive_use(d, dt_hours)


def reactive_use(d: pyo.Block, dt_hours: float) -> None:
    """d.reactive_kvarh = sum of |Q| dt over the horizon. Priced, even a little, it makes an
    inverter's Q zero unless it helps: reactive power is otherwise free in the model, and
    a free Q is an arbitrary Q, which the (DC) transmission side would not even see."""
    d.q_abs = pyo.Var(d.T, bounds=(0.0, None))
    d.q_abs_up = pyo.Constraint(d.T, rule=lambda _, t: d.q_abs[t] >= d.q[t])
    d.q_abs_down = pyo.Constraint(d.T, rule=lambda _, t: d.q_abs[t] >= -d.q[t])
    d.reactive_kvarh = pyo.Expression(expr=dt_hours * pyo.quicksum(d.q_abs[t] for t in d.T))


# -- batteries -----------------------------------------------------------------------------


def variables_battery(d: pyo.Block, unit: BatteryData, periods: Iterable[int], relax: bool = False) -> None:
    d.T = pyo.Set(initialize=list(periods), ordered=True)
    d.soc0 = pyo.Param(mutable=True, initialize=unit.soc_initial)
    target = unit.soc_initial if unit.soc_target is None else unit.soc_target
    d.soc_target = pyo.Param(mutable=True, initialize=target)
    kva = unit.kva or unit.kw_rated
    d.p_ch = pyo.Var(d.T, bounds=(0.0, unit.kw_rated))
    d.p_dis = pyo.Var(d.T, bounds=(0.0, unit.kw_rated))
    d.q = pyo.Var(d.T, bounds=(-kva, kva) if unit.reactive else (0.0, 0.0))
    d.soc = pyo.Var(d.T, bounds=(unit.soc_min, unit.soc_max))
    d.u = pyo.Var(d.T, domain=pyo.UnitInterval if relax else pyo.Binary)  # 1 = may charge, 0 = may discharge
    d.soc_short = pyo.Var(bounds=(0.0, None))  # shortfall below the terminal target (share of kWh)


def constraints_battery(d: pyo.Block, unit: BatteryData, dt_hours: float, sides: int = 8) -> None:
    first, last = d.T.first(), d.T.last()

    def soc_dynamics(_, t):
        before = d.soc0 if t == first else d.soc[d.T.prev(t)]
        return d.soc[t] == before + (unit.eta_charge * d.p_ch[t] - d.p_dis[t] / unit.eta_discharge) * dt_hours / unit.kwh_rated

    d.soc_dynamics = pyo.Constraint(d.T, rule=soc_dynamics)
    d.charge_only = pyo.Constraint(d.T, rule=lambda _, t: d.p_ch[t] <= unit.kw_rated * d.u[t])
    d.discharge_only = pyo.Constraint(d.T, rule=lambda _, t: d.p_dis[t] <= unit.kw_rated * (1 - d.u[t]))
    d.terminal_soc = pyo.Constraint(expr=d.soc[last] + d.soc_short >= d.soc_target)
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: d.p_dis[t] - d.p_ch[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: d.q[t])
    if unit.reactive:
        _inverter_polygon(d, lambda t: d.p_dis[t] - d.p_ch[t], lambda t: d.q[t], unit.kva or unit.kw_rated, sides, half=False)


def objective_battery(d: pyo.Block, unit: BatteryData, dt_hours: float) -> None:
    """d.throughput_kwh (charged + discharged, for degradation) and d.soc_shortfall_kwh."""
    d.throughput_kwh = pyo.Expression(expr=dt_hours * pyo.quicksum(d.p_ch[t] + d.p_dis[t] for t in d.T))
    d.soc_shortfall_kwh = pyo.Expression(expr=d.soc_short * unit.kwh_rated)
    reactive_use(d, dt_hours)


# -- flexible loads ------------------------------------------------------------------------


def variables_flexible_load(d: pyo.Block, unit: FlexibleLoadData, periods: Iterable[int]) -> None:
    d.T = pyo.Set(initialize=list(periods), ordered=True)
    d.baseline = pyo.Param(d.T, mutable=True, initialize=unit.baseline_kw)
    d.up_max = pyo.Param(d.T, mutable=True, initialize=unit.up_kw)
    d.down_max = pyo.Param(d.T, mutable=True, initialize=unit.down_kw)
    d.up = pyo.Var(d.T, bounds=(0.0, None))
    d.down = pyo.Var(d.T, bounds=(0.0, None))


def constraints_flexible_load(d: pyo.Block, unit: FlexibleLoadData) -> None:
    d.up_limit = pyo.Constraint(d.T, rule=lambda _, t: d.up[t] <= d.up_max[t])
    # Never below zero consumption, never below the allowed decrease.
    d.down_limit = pyo.Constraint(d.T, rule=lambda _, t: d.down[t] <= d.down_max[t])
    d.down_positive = pyo.Constraint(d.T, rule=lambda _, t: d.down[t] <= d.baseline[t])
    d.energy_neutral = pyo.Constraint(expr=pyo.quicksum(d.up[t] - d.down[t] for t in d.T) == 0)
    d.consumption = pyo.Expression(d.T, rule=lambda _, t: d.baseline[t] + d.up[t] - d.down[t])
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: -d.consumption[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: -unit.q_per_p * d.consumption[t])


def objective_flexible_load(d: pyo.Block, dt_hours: float) -> None:
    d.shifted_kwh = pyo.Expression(expr=dt_hours * pyo.quicksum(d.up[t] + d.down[t] for t in d.T))


# -- EV chargers ---------------------------------------------------------------------------


def variables_ev(d: pyo.Block, unit: EVData, periods: Iterable[int]) -> None:
    d.T = pyo.Set(initialize=list(periods), ordered=True)
    d.plugged = pyo.Param(d.T, mutable=True, initialize=0.0)
    d.energy_required = pyo.Param(mutable=True, initialize=0.0)  # kWh to deliver within the horizon
    d.p = pyo.Var(d.T, bounds=(0.0, unit.max_kw))
    d.unmet = pyo.Var(bounds=(0.0, None))


def constraints_ev(d: pyo.Block, unit: EVData, dt_hours: float) -> None:
    d.plugged_limit = pyo.Constraint(d.T, rule=lambda _, t: d.p[t] <= unit.max_kw * d.plugged[t])
    d.energy = pyo.Constraint(expr=dt_hours * pyo.quicksum(d.p[t] for t in d.T) + d.unmet >= d.energy_required)
    d.p_kw = pyo.Expression(d.T, rule=lambda _, t: -d.p[t])
    d.q_kvar = pyo.Expression(d.T, rule=lambda _, t: 0.0 * d.p[t])


def objective_ev(d: pyo.Block) -> None:
    d.unmet_kwh = pyo.Expression(expr=d.unmet)


# -- attaching to a feeder -----------------------------------------------------------------


@dataclass
class FeederDers:
    """The DERs of one feeder."""

    pv: list[PVData]
    batteries: list[BatteryData]
    flexible: list[FlexibleLoadData]
    evs: list[EVData]

    @classmethod
    def none(cls) -> "FeederDers":
        return cls([], [], [], [])


def add_ders(fb: pyo.Block, data: FeederData, ders: FeederDers, periods: Iterable[int], dt_hours: float,
             relax_batteries: bool = False, sides: int = 8) -> None:
    """One Block per unit under the feeder block: fb.pv[name], fb.battery[name],
    fb.flexible[name], fb.ev[name]; each with p_kw[t], q_kvar[t] and its cost measures."""
    periods = list(periods)
    for unit in [*ders.pv, *ders.batteries, *ders.flexible, *ders.evs]:
        parse_connection(unit.at, data)  # fail early on unknown buses or phases
    pv = {u.name: u for u in ders.pv}
    bat = {u.name: u for u in ders.batteries}
    flex = {u.name: u for u in ders.flexible}
    evs = {u.name: u for u in ders.evs}

    def pv_rule(d, name):
        variables_pv(d, pv[name], periods)
        constraints_pv(d, pv[name], sides)
        objective_pv(d, dt_hours)

    def battery_rule(d, name):
        variables_battery(d, bat[name], periods, relax_batteries)
        constraints_battery(d, bat[name], dt_hours, sides)
        objective_battery(d, bat[name], dt_hours)

    def flexible_rule(d, name):
        variables_flexible_load(d, flex[name], periods)
        constraints_flexible_load(d, flex[name])
        objective_flexible_load(d, dt_hours)

    def ev_rule(d, name):
        variables_ev(d, evs[name], periods)
        constraints_ev(d, evs[name], dt_hours)
        objective_ev(d)

    fb.pv = pyo.Block(list(pv), rule=pv_rule)
    fb.battery = pyo.Block(list(bat), rule=battery_rule)
    fb.flexible = pyo.Block(list(flex), rule=flexible_rule)
    fb.ev = pyo.Block(list(evs), rule=ev_rule)
    fb.der_at = {**{("pv", u.name): u.at for u in ders.pv}, **{("battery", u.name): u.at for u in ders.batteries},
                 **{("flexible", u.name): u.at for u in ders.flexible}, **{("ev", u.name): u.at for u in ders.evs}}


def der_injections(fb: pyo.Block, data: FeederData) -> tuple[dict, dict]:
    """What the DERs of a feeder block feed in per node and period, {(bus, phase): {t: expr}},
    each unit split evenly over its phases (P and Q)."""
    p_inj: dict[tuple[str, int], dict] = {}
    q_inj: dict[tuple[str, int], dict] = {}
    for kind in ("pv", "battery", "flexible", "ev"):
        blocks = getattr(fb, kind)
        for name in blocks:
            d = blocks[name]
            bus, phases = parse_connection(fb.der_at[(kind, name)], data)
            share = 1.0 / len(phases)
            for ph in phases:
                pn = p_inj.setdefault((bus, ph), {})
                qn = q_inj.setdefault((bus, ph), {})
                for t in d.T:
                    pn[t] = pn.get(t, 0.0) + share * d.p_kw[t]
                    qn[t] = qn.get(t, 0.0) + share * d.q_kvar[t]
    return p_inj, q_inj


# -- from the simulation's fleet and back --------------------------------------------------


def ders_from_fleet(fleet) -> FeederDers:
    """The DERs of a `grid.ders.DerFleet` (PV, batteries, EV chargers) as data."""
    pv = [PVData(u.name, u.at.bus, u.kva, u.pmpp_kw) for u in fleet.pv]
    batteries = [BatteryData(u.name, u.at.bus, u.kw_rated, u.kwh_rated, u.eta_charge, u.eta_discharge,
                             u.soc_min, u.soc_max, u.soc) for u in fleet.batteries]
    evs = [EVData(u.name, u.at.bus, u.max_kw) for u in fleet.evs]
    return FeederDers(pv, batteries, [], evs)


def ev_horizon(unit, k: int, horizon: int, step_hours: float) -> tuple[np.ndarray, float]:
    """Plugged-in flags over steps k .. k+horizon-1 and the energy (kWh) the horizon must
    deliver for a `grid.ders.EVCharger`: what is owed for sessions leaving within
    the horizon, and what cannot wait until after the horizon for those leaving later."""
    plugged = np.zeros(horizon)
    required = 0.0
    end = k + horizon
    for s in unit.sessions:
        if s.depart_step <= k or s.arrive_step >= end:
            continue
        plugged[max(s.arrive_step, k) - k: min(s.depart_step, end) - k] = 1.0
        if s.arrive_step < k:  # plugged in already: what it still needs
            owed = unit.owed_kwh
        elif s.arrive_step == k:  # arriving now: the fleet books the session's energy on apply()
            owed = unit.owed_kwh or s.energy_kwh
        else:
            owed = s.energy_kwh
        after = max(0, s.depart_step - end) * unit.max_kw * step_hours  # deliverable after the horizon
        required += max(0.0, owed - after)
    return plugged, required
