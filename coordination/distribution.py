"""LinDist3Flow: linearised unbalanced three-phase power flow of a radial feeder.

The formulation of Gan & Low (2014) and Arnold et al. (2016), per period t:

* Flows: P[j,phi] and Q[j,phi] (kW, kvar) enter bus j on phase phi from its parent i.
  Losses are neglected, so each phase balances on its own:
  P[j,phi] = sum of P[k,phi] over the children k of j + load[j,phi] - injection[j,phi].
* Voltages: w = |V|^2 in pu^2 of the bus's own voltage base. Along a branch i -> j
  with series impedance Z (ohm, referred to j) and ratio n (regulator taps, pu):

      w[j,phi] = n_phi^2 w[i,phi] - 2 sum_psi (Re(Zt[phi,psi]) P[j,psi] + Im(Zt[phi,psi]) Q[j,psi]) / (1000 kV_j^2)

  with Zt[phi,psi] = Z[phi,psi] exp(-j(theta_phi - theta_psi)): the impedance matrix rotated
  by a = exp(-j 2 pi / 3) and a^2 off the diagonal, which is what assuming balanced
  voltage angles (theta_a, theta_b, theta_c = 0, -120, +120 deg) makes of
  V_i V_i^H - V_j V_j^H ~ Z I V_i^H + V_i I^H Z^H. kW and ohm over 1000 kV^2 is pu.
* Loads follow w linearly around 1 pu and their nominal power: P = P[t] + k Pnom (w - 1),
  k = 1 for constant impedance, 1/2 for constant current (|V| ~ (1 + w) / 2), 0 for
  constant power; at nominal load that is P = Pnom (1 - k + k w), exact in w for
  constant impedance. The sensitivity k Pnom is a fixed coefficient on purpose: a
  coefficient that follows the forecast would be re-sent to HiGHS at every solve, which
  discards its factorisation and makes re-solves several times slower. Capacitors inject
  Q = Q0 w. Both can be switched off (constant-power loads, fixed kvar).
* Voltage limits are soft (penalised slacks, so no period makes the problem
  infeasible); branch limits bound |S| per phase by an inscribed regular polygon,
  also soft.

Known limits of the linearisation: losses are neglected (the head power is low by the
losses, about 2.5-3 % on the IEEE 13 and 123 feeders at peak), and the phase shift and
phase mixing of delta-connected transformers are dropped (each phase maps to the same
phase); behind an ungrounded delta secondary the line-to-ground voltages OpenDSS shows
are not those of the primary phases.

Data that change between solves (load forecasts) are mutable pyomo Params, so a model is
built once and re-solved. Regulator ratios and voltage limits change rarely and are
plain numbers: `set_ratios` rewrites the few constraints a tap change touches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pyomo.environ as pyo

from coordination.network_data import PHASE_ANGLE, FeederData
from coordination.options import as_durations

Node = tuple[str, int]  # (bus, phase)


def rotated_impedance(z_ohm: np.ndarray, phases: tuple[int, ...]) -> np.ndarray:
    """Zt[phi, psi] = Z[phi, psi] exp(-j (theta_phi - theta_psi)), the LinDist3Flow voltage-drop matrix."""
    angles = np.array([PHASE_ANGLE[p] for p in phases])
    return z_ohm * np.exp(-1j * (angles[:, None] - angles[None, :]))


def _load_vdep(data: FeederData, nodes: list[Node]) -> tuple[dict[Node, float], dict[Node, float]]:
    """Per loaded node, the share of its load that follows w (weighted by nominal P and Q)."""
    num_p = {n: 0.0 for n in nodes}
    num_q = dict(num_p)
    den_p = dict(num_p)
    den_q = dict(num_p)
    for ld in data.loads:
        for k, ph in enumerate(ld.phases):
            n = (ld.bus, ph)
            num_p[n] += ld.vdep_p * abs(ld.p_kw[k])
            den_p[n] += abs(ld.p_kw[k])
            num_q[n] += ld.vdep_q * abs(ld.q_kvar[k])
            den_q[n] += abs(ld.q_kvar[k])
    return ({n: num_p[n] / den_p[n] if den_p[n] else 0.0 for n in nodes},
            {n: num_q[n] / den_q[n] if den_q[n] else 0.0 for n in nodes})


def parameters_feeder(b: pyo.Block, data: FeederData, periods: Iterable[int]) -> None:
    """Sets, and the load forecasts per node as mutable Params (kW, kvar at nominal voltage,
    initialised to the nominal loads). Branch ratios (taps) are kept as plain numbers in
    b.ratio (see `set_ratios`)."""
    b.T = pyo.Set(initialize=list(periods), ordered=True)
    b.nodes = pyo.Set(initialize=data.nodes, dimen=2, ordered=True)
    b.flow_nodes = pyo.Set(initialize=[(br.to_bus, p) for br in data.branches for p in br.phases], dimen=2, ordered=True)
    loaded, p_map, q_map = data.load_matrix()
    b.load_nodes = pyo.Set(initialize=loaded, dimen=2, ordered=True)
    p_nom = dict(zip(loaded, p_map.sum(axis=1)))
    q_nom = dict(zip(loaded, q_map.sum(axis=1)))
    b.p_load = pyo.Param(b.load_nodes, b.T, mutable=True, initialize=lambda _, bus, ph, t: p_nom[(bus, ph)])
    b.q_load = pyo.Param(b.load_nodes, b.T, mutable=True, initialize=lambda _, bus, ph, t: q_nom[(bus, ph)])
    b.ratio = {(br.to_bus, p): float(r) for br in data.branches if br.kind in ("transformer", "regulator")
               for p, r in zip(br.phases, br.ratio)}


def variables_lindist3flow(b: pyo.Block, data: FeederData) -> None:
    """Per-phase branch flows P, Q (kW, kvar, into the child bus) and squared voltages w (pu^2)."""
    b.P = pyo.Var(b.flow_nodes, b.T)
    b.Q = pyo.Var(b.flow_nodes, b.T)
    b.w = pyo.Var(b.nodes, b.T, bounds=(0.0, 4.0), initialize=1.0)


def constraints_lindist3flow(b: pyo.Block, data: FeederData,
                             p_injection: Mapping[Node, Mapping[int, object]] | None = None,
                             q_injection: Mapping[Node, Mapping[int, object]] | None = None,
                             voltage_dependent_loads: bool = True, hold_regulated: bool = False) -> None:
    """Lossless per-phase power balance and the linearised voltage drop of every branch.

    Regulators are fixed ratios; with `hold_regulated` they are instead ideal: the voltage
    on their load side is held at b.w_held[bus, phase] (set with `set_held_voltage`, e.g.
    from measurements), whatever happens upstream or downstream. That is what a regulator
    does between its tap moves, and an OPF that instead took the taps as fixed would try to
    move voltages the regulator then moves back (absorbing Q to lower a voltage makes it
    tap up).

    `p_injection[(bus, phase)][t]` are pyomo expressions (kW, kvar) of what DERs feed in
    there (see `coordination.ders.der_injections`). Also adds the head-of-feeder power
    b.p_head[phase, t], b.q_head[phase, t] (drawn from the source bus, kW, kvar) and
    their sums b.p_sub[t], b.q_sub[t]."""
    p_injection = p_injection or {}
    q_injection = q_injection or {}
    children = data.children()
    loaded = set(b.load_nodes)
    vdep_p, vdep_q = _load_vdep(data, list(b.load_nodes))
    if not voltage_dependent_loads:
        vdep_p = {n: 0.0 for n in vdep_p}
        vdep_q = {n: 0.0 for n in vdep_q}
    nodes, p_map, q_map = data.load_matrix()
    # Voltage sensitivity of the loads (kW and kvar per unit of w), from the nominal loads.
    sens_p = {n: vdep_p[n] * p for n, p in zip(nodes, p_map.sum(axis=1))}
    sens_q = {n: vdep_q[n] * q for n, q in zip(nodes, q_map.sum(axis=1))}
    cap_kvar: dict[Node, float] = {}
    for cap in data.capacitors:
        for ph, kvar in zip(cap.phases, cap.kvar):
            cap_kvar[(cap.bus, ph)] = cap_kvar.get((cap.bus, ph), 0.0) + float(kvar)

    def withdrawn(bus: str, ph: int, t: int) -> tuple[object, object]:
        """What leaves node (bus, ph) other than into child branches: loads - capacitors - DERs."""
        n = (bus, ph)
        p, q = 0.0, 0.0
        if n in loaded:
            p = b.p_load[bus, ph, t] + (sens_p[n] * (b.w[bus, ph, t] - 1) if sens_p[n] else 0.0)
            q = b.q_load[bus, ph, t] + (sens_q[n] * (b.w[bus, ph, t] - 1) if sens_q[n] else 0.0)
        if n in cap_kvar:
            q = q - cap_kvar[n] * (b.w[bus, ph, t] if voltage_dependent_loads else 1.0)
        if n in p_injection:
            p = p - p_injection[n][t]
        if n in q_injection:
            q = q - q_injection[n][t]
        return p, q

    def out_flow(bus: str, ph: int, t: int, var) -> object:
        return sum(var[br.to_bus, ph, t] for br in children[bus] if ph in br.phases)

    def p_balance(_, bus, ph, t):
        return b.P[bus, ph, t] == out_flow(bus, ph, t, b.P) + withdrawn(bus, ph, t)[0]

    def q_balance(_, bus, ph, t):
        return b.Q[bus, ph, t] == out_flow(bus, ph, t, b.Q) + withdrawn(bus, ph, t)[1]

    b.p_balance = pyo.Constraint(b.flow_nodes, b.T, rule=p_balance)
    b.q_balance = pyo.Constraint(b.flow_nodes, b.T, rule=q_balance)

    root = data.source_bus
    root_phases = data.buses[root].phases
    b.head_phases = pyo.Set(initialize=root_phases, ordered=True)
    b.p_head = pyo.Expression(b.head_phases, b.T, rule=lambda _, ph, t: out_flow(root, ph, t, b.P) + withdrawn(root, ph, t)[0])
    b.q_head = pyo.Expression(b.head_phases, b.T, rule=lambda _, ph, t: out_flow(root, ph, t, b.Q) + withdrawn(root, ph, t)[1])
    b.p_sub = pyo.Expression(b.T, rule=lambda _, t: sum(b.p_head[ph, t] for ph in root_phases))
    b.q_sub = pyo.Expression(b.T, rule=lambda _, t: sum(b.q_head[ph, t] for ph in root_phases))

    # Voltage drop coefficients (pu^2 per kW / kvar) of every branch, computed once.
    drop: dict[Node, list[tuple[int, float, float]]] = {}
    parent: dict[str, str] = {}
    for br in data.branches:
        zt = rotated_impedance(br.z_ohm, br.phases) / (1000.0 * data.buses[br.to_bus].kv_ln ** 2)
        parent[br.to_bus] = br.from_bus
        for i, ph in enumerate(br.phases):
            drop[(br.to_bus, ph)] = [(psi, 2.0 * zt[i, k].real, 2.0 * zt[i, k].imag) for k, psi in enumerate(br.phases)]
    parameters_held_voltage(b, data, hold_regulated)

    def voltage_drop(_, bus, ph, t):
        if (bus, ph) in b.held_nodes:
            return b.w[bus, ph, t] == b.w_held[bus, ph]
        ratio = b.ratio.get((bus, ph), 1.0)
        return b.w[bus, ph, t] == ratio ** 2 * b.w[parent[bus], ph, t] - sum(
            cp * b.P[bus, psi, t] + cq * b.Q[bus, psi, t] for psi, cp, cq in drop[(bus, ph)])

    b.voltage_drop = pyo.Constraint(b.flow_nodes, b.T, rule=voltage_drop)
    b.voltage_drop_rule = voltage_drop  # `set_ratios` rebuilds rows with it


def parameters_held_voltage(b: pyo.Block, data: FeederData, hold_regulated: bool) -> None:
    """b.held_nodes (the regulators' load-side nodes when they are held, else none) and the
    squared voltage they hold, b.w_held (mutable, see `set_held_voltage`)."""
    held = [(br.to_bus, p) for br in data.branches if br.kind == "regulator" for p in br.phases] if hold_regulated else []
    b.held_nodes = pyo.Set(initialize=held, dimen=2, ordered=True)
    b.w_held = pyo.Param(b.held_nodes, mutable=True, initialize=lambda _, bus, ph: b.ratio.get((bus, ph), 1.0) ** 2)


def constraints_voltage_limits(b: pyo.Block, data: FeederData, v_min: float = 0.95, v_max: float = 1.05,
                               dt_hours: float = 1.0, exclude_buses: Iterable[str] = ()) -> None:
    """Soft limits v_min^2 - s_lo <= w <= v_max^2 + s_hi on every node (the source bus, which
    belongs to the transmission side, excepted). b.voltage_violation sums the slacks (pu^2 h)."""
    skip = {data.source_bus, *exclude_buses}
    b.limited_nodes = pyo.Set(initialize=[n for n in data.nodes if n[0] not in skip], dimen=2, ordered=True)
    b.s_v_hi = pyo.Var(b.limited_nodes, b.T, bounds=(0.0, None))
    b.s_v_lo = pyo.Var(b.limited_nodes, b.T, bounds=(0.0, None))
    b.v_upper = pyo.Constraint(b.limited_nodes, b.T,
                               rule=lambda _, bus, ph, t: b.w[bus, ph, t] - b.s_v_hi[bus, ph, t] <= v_max ** 2)
    b.v_lower = pyo.Constraint(b.limited_nodes, b.T,
                               rule=lambda _, bus, ph, t: b.w[bus, ph, t] + b.s_v_lo[bus, ph, t] >= v_min ** 2)
    dt = as_durations(dt_hours, b.T)
    b.voltage_violation = pyo.Expression(expr=pyo.quicksum(
        dt[t] * (b.s_v_hi[n, t] + b.s_v_lo[n, t]) for n in b.limited_nodes for t in b.T))


def polygon_sides(sides: int, half: bool = False) -> list[tuple[float, float, float]]:
    """Sides of the regular polygon inscribed in the unit circle with a vertex at (1, 0):
    (cos a, sin a, r) for the constraints P cos a + Q sin a <= r S. Every vertex lies on
    the circle, so a point in the polygon is within |S| <= S and (S, 0), (0, +-S) are
    reachable when `sides` is a multiple of 4. `half` keeps the sides facing P > 0 (for
    units with P >= 0 as a separate bound)."""
    r = math.cos(math.pi / sides)
    out = []
    for k in range(sides):
        a = (k + 0.5) * 2 * math.pi / sides
        if not half or math.cos(a) > 1e-12:
            out.append((math.cos(a), math.sin(a), r))
    return out


def downstream_kva(data: FeederData, extra_kva: Mapping[Node, float] | None = None) -> dict[Node, float]:
    """Per branch phase (keyed by its child node), the sum of |S| of the nominal loads and of
    `extra_kva` (e.g. DER ratings) at and below it: a bound on its flow at nominal load."""
    total: dict[Node, float] = {n: 0.0 for n in data.nodes}
    for ld in data.loads:
        for k, ph in enumerate(ld.phases):
            total[(ld.bus, ph)] += float(abs(complex(ld.p_kw[k], ld.q_kvar[k])))
    for n, kva in (extra_kva or {}).items():
        total[n] += kva
    for br in reversed(data.branches):  # children before parents (breadth-first order reversed)
        for ph in br.phases:
            if (br.from_bus, ph) in total:
                total[(br.from_bus, ph)] += total[(br.to_bus, ph)]
    return {(br.to_bus, ph): total[(br.to_bus, ph)] for br in data.branches for ph in br.phases}


def limited_flows(data: FeederData, kinds: Iterable[str] = ("line", "transformer", "regulator"),
                  screen: float | None = 2.0, extra_kva: Mapping[Node, float] | None = None) -> dict[Node, float]:
    """The branch phases `constraints_branch_limits` limits, with their ratings (kVA)."""
    kinds = set(kinds)
    reach = downstream_kva(data, extra_kva) if screen is not None else {}
    return {(br.to_bus, p): br.rating_kva
            for br in data.branches if br.rating_kva and br.kind in kinds for p in br.phases
            if screen is None or screen * reach[(br.to_bus, p)] >= br.rating_kva}


def constraints_branch_limits(b: pyo.Block, data: FeederData, sides: int = 8, dt_hours: float = 1.0,
                              kinds: Iterable[str] = ("line", "transformer", "regulator"),
                              screen: float | None = 2.0, extra_kva: Mapping[Node, float] | None = None) -> None:
    """Soft per-phase apparent-power limits |S| <= rating, as the regular polygon inscribed in
    the circle (HiGHS takes no quadratic constraints; see `polygon_sides`):
    P cos(a_k) + Q sin(a_k) <= r rating + slack. b.flow_violation sums the slacks (kVA h).

    Switches are left out by default (their ratings are nominal). With `screen`, a branch
    phase is limited only if `screen` x its downstream nominal load plus DER ratings
    (`downstream_kva`) reaches its rating: on a feeder most laterals can never be loaded
    near their rating, and each limit costs `sides` rows per period."""
    rating = limited_flows(data, kinds, screen, extra_kva)
    polygon = polygon_sides(sides)
    b.limited_flows = pyo.Set(initialize=list(rating), dimen=2, ordered=True)
    b.sides = pyo.Set(initialize=range(len(polygon)), ordered=True)
    b.s_flow = pyo.Var(b.limited_flows, b.T, bounds=(0.0, None))

    def limit(_, bus, ph, k, t):
        c, s, r = polygon[k]
        return c * b.P[bus, ph, t] + s * b.Q[bus, ph, t] - b.s_flow[bus, ph, t] <= r * rating[(bus, ph)]

    b.flow_limit = pyo.Constraint(b.limited_flows, b.sides, b.T, rule=limit)
    dt = as_durations(dt_hours, b.T)
    b.flow_violation = pyo.Expression(expr=pyo.quicksum(dt[t] * b.s_flow[n, t] for n in b.limited_flows for t in b.T))


def set_load_forecast(b: pyo.Block, data: FeederData, levels: np.ndarray) -> None:
    """Load forecasts from per-load levels (pu of nominal, [load, period], the layout of
    `FeederModel.load_levels`): node P and Q are the nominal loads times their levels."""
    nodes, p_map, q_map = data.load_matrix()
    levels = np.asarray(levels, dtype=float)
    if levels.ndim == 1:
        levels = np.tile(levels[:, None], (1, len(b.T)))
    p, q = p_map @ levels, q_map @ levels
    set_node_loads(b, nodes, p, q)


def set_node_loads(b: pyo.Block, nodes: list[Node], p_kw: np.ndarray, q_kvar: np.ndarray) -> None:
    """Node load forecasts directly, [node, period] in kW and kvar at nominal voltage."""
    periods = list(b.T)
    for i, (bus, ph) in enumerate(nodes):
        for k, t in enumerate(periods):
            b.p_load[bus, ph, t] = float(p_kw[i, k])
            b.q_load[bus, ph, t] = float(q_kvar[i, k])


def set_ratios(b: pyo.Block, data: FeederData) -> list:
    """Copy the branch ratios (taps) in `data` into the model; returns the voltage-drop
    constraints that changed (a persistent solver must be told, see
    `PersistentHighs.replace_constraints`)."""
    changed = []
    for br in data.branches:
        for p, r in zip(br.phases, br.ratio):
            key = (br.to_bus, p)
            if key in b.ratio and b.ratio[key] != float(r):
                b.ratio[key] = float(r)
                for t in b.T:
                    con = b.voltage_drop[br.to_bus, p, t]
                    con.set_value(b.voltage_drop_rule(b, br.to_bus, p, t))
                    changed.append(con)
    return changed


def set_held_voltage(b: pyo.Block, v_pu: Mapping[Node, float]) -> None:
    """The voltage (pu) held by each ideal regulator (see `constraints_lindist3flow`); nodes
    that are not held are ignored."""
    for node, v in v_pu.items():
        if node in b.held_nodes:
            b.w_held[node] = float(v) ** 2


def voltages(b: pyo.Block, w_values) -> dict[Node, np.ndarray]:
    """Voltage magnitudes (pu) per node and period from solved w values (keyed like b.w)."""
    periods = list(b.T)
    return {(bus, ph): np.sqrt(np.maximum([w_values[b.w[bus, ph, t]] for t in periods], 0.0)) for bus, ph in b.nodes}


def snapshot(data: FeederData, v_source: float = 1.0, load_levels: np.ndarray | None = None,
             voltage_dependent_loads: bool = True) -> dict:
    """Solve LinDist3Flow for one operating point (loads at `load_levels` x nominal, no DERs).

    Returns node voltages (pu, {(bus, phase): v}), and the head power per phase and in
    total ({"p_head_kw": {phase: kW}, "q_head_kvar": ..., "p_kw": total, "q_kvar": total})."""
    from coordination.interface import constraints_head_voltage, parameters_head_voltage
    from coordination.solver import PersistentHighs

    m = pyo.ConcreteModel()
    m.feeder = pyo.Block()
    b = m.feeder
    parameters_feeder(b, data, [0])
    if load_levels is not None:
        set_load_forecast(b, data, np.asarray(load_levels, dtype=float).reshape(-1, 1))
    variables_lindist3flow(b, data)
    constraints_lindist3flow(b, data, voltage_dependent_loads=voltage_dependent_loads)
    parameters_head_voltage(b, v_source)
    constraints_head_voltage(b, data)
    m.objective = pyo.Objective(expr=0.0)
    solver = PersistentHighs(m)
    result = solver.solve()
    if not result.optimal:
        raise RuntimeError(f"LinDist3Flow snapshot of {data.name}: {result.status}")
    solver.load([b.w, b.P, b.Q])  # the head powers are expressions of these
    return {
        "v_pu": {(bus, ph): math.sqrt(max(pyo.value(b.w[bus, ph, 0]), 0.0)) for bus, ph in b.nodes},
        "p_head_kw": {ph: pyo.value(b.p_head[ph, 0]) for ph in b.head_phases},
        "q_head_kvar": {ph: pyo.value(b.q_head[ph, 0]) for ph in b.head_phases},
        "p_kw": pyo.value(b.p_sub[0]),
        "q_kvar": pyo.value(b.q_sub[0]),
    }
