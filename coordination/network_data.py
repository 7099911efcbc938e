"""Network data for the optimisation models, extracted from pandapower and OpenDSS.

Only extraction lives here: plain dataclasses with numbers in stated units, so the
model-building modules never touch pandapower or OpenDSS and tests can build data by
hand.

Transmission (DC-OPF): reactances come from pandapower's own conversion to its
internal PYPOWER case (`rundcpp` on a copy of the net), so per-unit values, off-nominal
tap ratios and phase shifts follow pandapower's conventions exactly; ratings come from
the element tables (max_i_ka x vn_kv x sqrt(3), or sn_mva), costs from `poly_cost`.

Feeders (LinDist3Flow): a radial tree grown from the source bus, one branch per bus
pair (parallel single-phase elements, e.g. a bank of three regulators, are merged),
with the series impedance matrix in ohm per branch, the current transformer and
regulator ratios, loads and capacitors per phase at nominal voltage, and the bus
voltage bases.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

SQRT3 = math.sqrt(3.0)


# --------------------------------------------------------------------------------------
# Transmission
# --------------------------------------------------------------------------------------


@dataclass
class Branch:
    """A line or transformer for the DC power flow: flow (MW) = base_mva * (th_f - th_t - shift) / x_pu."""

    name: str  # "line:<index>" or "trafo:<index>"
    from_bus: int  # pandapower bus index
    to_bus: int
    x_pu: float  # series reactance on the system base, times the off-nominal tap ratio
    r_pu: float = 0.0  # series resistance on the system base (for the loss approximation)
    shift_rad: float = 0.0  # phase shift of a phase-shifting transformer
    rating_mw: float | None = None  # thermal limit; None = unlimited


@dataclass
class Generator:
    """A generating unit; cost(p) = c0 + c1 p + c2 p^2 in currency per hour, p in MW."""

    name: str  # "gen:<index>", "ext_grid:<index>" or "sgen:<index>"
    bus: int
    p_min_mw: float | None
    p_max_mw: float | None
    c0: float = 0.0
    c1: float = 0.0
    c2: float = 0.0
    ramp_up_mw_per_h: float | None = None  # None = no ramp limit
    ramp_down_mw_per_h: float | None = None
    p_mw: float = 0.0  # dispatch in the net (a starting point for the previous-period ramp)


@dataclass
class Load:
    name: str  # "load:<index>"
    bus: int
    p_mw: float
    q_mvar: float = 0.0


@dataclass
class TransmissionData:
    """What a DC-OPF needs from a transmission network."""

    base_mva: float
    buses: list[int]  # pandapower bus indices, in service
    slack_bus: int  # angle reference
    branches: list[Branch]
    generators: list[Generator]
    loads: list[Load]

    def derated(self, margin: float) -> "TransmissionData":
        """The same network with every branch rating cut by `margin` (a share), e.g. to keep room
        for the reactive flow and losses a DC-OPF does not model."""
        if not margin:
            return self
        branches = [replace(br, rating_mw=None if br.rating_mw is None else br.rating_mw * (1.0 - margin))
                    for br in self.branches]
        return replace(self, branches=branches)

    def bus_load_mw(self) -> dict[int, float]:
        """Total load per bus (MW), every bus present."""
        total = {b: 0.0 for b in self.buses}
        for load in self.loads:
            total[load.bus] += load.p_mw
        return total


def _finite(value) -> float | None:
    """A finite float, or None for NaN, inf and missing values."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _column(table, column: str, index, default=None):
    return table.at[index, column] if column in table.columns else default


def transmission_data(net, ramp_mw_per_h: dict[str, float] | None = None,
                      default_cost_per_mwh: float = 0.0) -> TransmissionData:
    """DC-OPF data of a pandapower net (the net itself is not modified).

    Ramp limits are not part of pandapower's tables: give them per generator name
    (e.g. {"gen:0": 50.0}); a column "ramp_mw_per_h" in net.gen, net.sgen or net.ext_grid
    is read too. Generators without a poly_cost row get `default_cost_per_mwh`;
    quadratic terms (cp2) are kept for the piecewise-linear cost in `transmission`.
    Non-controllable static generators are fixed injections (p_min = p_max = p_mw).
    """
    import pandapower as pp

    ramps = dict(ramp_mw_per_h or {})
    work = copy.deepcopy(net)  # rundcpp writes result tables; the caller's net stays as it was
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.rundcpp(work, numba=False)
    ppc = work._ppc
    lookup_bus = work._pd2ppc_lookups["bus"]
    base_mva = float(ppc["baseMVA"])

    in_service = net.bus.index[net.bus.in_service.astype(bool)]
    buses = [int(b) for b in in_service]
    # ppc fuses buses joined by closed bus-bus switches: map every ppc bus back to one pandapower bus.
    ppc_to_bus: dict[int, int] = {}
    for b in buses:
        ppc_to_bus.setdefault(int(lookup_bus[b]), b)

    branches: list[Branch] = []
    ranges = work._pd2ppc_lookups["branch"]
    for element in ("line", "trafo"):
        if element not in ranges:
            continue
        start, stop = ranges[element]
        table = net[element]
        for row, index in zip(range(start, stop), table.index):
            br = ppc["branch"][row]
            if br[10].real == 0 or not bool(table.at[index, "in_service"]):  # BR_STATUS
                continue
            tap = br[8].real or 1.0  # TAP (0 means 1 in PYPOWER)
            if element == "line":
                vn = float(net.bus.at[int(table.at[index, "from_bus"]), "vn_kv"])
                imax = _finite(table.at[index, "max_i_ka"])
                parallel = float(_column(table, "parallel", index, 1) or 1)
                derate = float(_column(table, "df", index, 1.0) or 1.0)
                rating = imax * vn * SQRT3 * parallel * derate if imax and imax > 0 else None
            else:
                sn = _finite(table.at[index, "sn_mva"])
                parallel = float(_column(table, "parallel", index, 1) or 1)
                rating = sn * parallel if sn and sn > 0 else None
            branches.append(Branch(
                name=f"{element}:{index}",
                from_bus=ppc_to_bus[int(br[0].real)],
                to_bus=ppc_to_bus[int(br[1].real)],
                x_pu=float(br[3].real * tap),  # makeBdc: b = 1 / (x * tap)
                r_pu=float(br[2].real),
                shift_rad=math.radians(float(br[9].real)),
                rating_mw=rating,
            ))
    for element in ("impedance", "trafo3w", "dcline"):
        if element in net and len(net[element]) and net[element].in_service.any():
            raise NotImplementedError(f"transmission_data: {element} elements are not supported")

    costs: dict[tuple[str, int], tuple[float, float, float]] = {}
    if "poly_cost" in net and len(net.poly_cost):
        for _, row in net.poly_cost.iterrows():
            costs[(str(row["et"]), int(row["element"]))] = (
                float(row.get("cp0_eur", 0.0)), float(row.get("cp1_eur_per_mw", 0.0)), float(row.get("cp2_eur_per_mw2", 0.0)))

    generators: list[Generator] = []
    for element in ("ext_grid", "gen", "sgen"):
        table = net[element]
        for index in table.index:
            if not bool(table.at[index, "in_service"]):
                continue
            name = f"{element}:{index}"
            bus = int(table.at[index, "bus"])
            p_mw = _finite(_column(table, "p_mw", index, 0.0)) or 0.0
            if element == "ext_grid":
                p_mw = float(work.res_ext_grid.at[index, "p_mw"])
            controllable = element != "sgen" or bool(_column(table, "controllable", index, False) or False)
            if controllable:
                p_min = _finite(_column(table, "min_p_mw", index))
                p_max = _finite(_column(table, "max_p_mw", index))
                if element == "gen" and p_min is None:
                    p_min = 0.0
            else:
                p_min = p_max = p_mw
            c0, c1, c2 = costs.get((element, int(index)), (0.0, default_cost_per_mwh, 0.0))
            ramp = ramps.get(name, _finite(_column(table, "ramp_mw_per_h", index)))
            generators.append(Generator(name, bus, p_min, p_max, c0, c1, c2, ramp, ramp, p_mw))

    loads = [
        Load(f"load:{i}", int(net.load.at[i, "bus"]),
             float(net.load.at[i, "p_mw"]) * float(_column(net.load, "scaling", i, 1.0)),
             float(net.load.at[i, "q_mvar"]) * float(_column(net.load, "scaling", i, 1.0)))
        for i in net.load.index if bool(net.load.at[i, "in_service"])
    ]
    if len(net.ext_grid):
        slack = int(net.ext_grid.bus.iloc[0])
    else:
        slack_gens = net.gen.index[net.gen.slack.astype(bool)] if "slack" in net.gen.columns else []
        slack = int(net.gen.at[slack_gens[0], "bus"]) if len(slack_gens) else buses[0]
    return TransmissionData(base_mva, buses, slack, branches, generators, loads)


# --------------------------------------------------------------------------------------
# Feeders
# --------------------------------------------------------------------------------------

PHASES = (1, 2, 3)
# Nominal phase angles of phases a, b, c (radians): the LinDist3Flow voltage-drop rotations
# and the delta-to-wye split of loads assume these.
PHASE_ANGLE = {1: 0.0, 2: -2.0 * math.pi / 3.0, 3: 2.0 * math.pi / 3.0}


@dataclass
class FeederBus:
    name: str
    phases: tuple[int, ...]  # 1, 2, 3 = a, b, c
    kv_ln: float  # voltage base, line to neutral


@dataclass
class FeederBranch:
    """A series element between a parent and a child bus of the tree.

    Voltage drop: w_to = ratio^2 * w_from - (drop of z_ohm with the branch flows), per phase,
    with z_ohm referred to the child bus (for transformers: the leakage impedance on the
    child side; the phase shift of delta-wye banks is dropped, magnitudes only)."""

    name: str
    from_bus: str  # parent (towards the source)
    to_bus: str
    phases: tuple[int, ...]
    z_ohm: np.ndarray  # complex [len(phases), len(phases)], in `phases` order
    kind: str  # "line", "switch", "transformer", "regulator"
    ratio: np.ndarray  # per phase, pu voltage at `to_bus` over `from_bus` at no load (taps included)
    rating_kva: float | None = None  # per phase; None = unlimited
    elements: list[str] = field(default_factory=list)  # OpenDSS elements merged into this branch


@dataclass
class FeederLoad:
    """A load at nominal voltage, mapped to phases; p and q are per phase in `phases` order.

    vdep_p / vdep_q: how the power follows the squared voltage w, linearised around 1 pu:
    P = P0 * (1 - vdep + vdep * w); 0 constant power, 0.5 constant current, 1 constant impedance."""

    name: str
    bus: str
    phases: tuple[int, ...]
    p_kw: np.ndarray
    q_kvar: np.ndarray
    vdep_p: float = 0.0
    vdep_q: float = 0.0


@dataclass
class FeederCapacitor:
    """A shunt capacitor, kvar per phase at 1 pu of the bus base (constant impedance)."""

    name: str
    bus: str
    phases: tuple[int, ...]
    kvar: np.ndarray


@dataclass
class FeederData:
    """What LinDist3Flow needs from a feeder; buses and branches in breadth-first order from the source."""

    name: str
    source_bus: str
    buses: dict[str, FeederBus]
    branches: list[FeederBranch]
    loads: list[FeederLoad]
    capacitors: list[FeederCapacitor]

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """Every (bus, phase) of the feeder."""
        return [(b.name, p) for b in self.buses.values() for p in b.phases]

    def branch_to(self) -> dict[str, FeederBranch]:
        """The branch feeding each bus (the source bus has none)."""
        return {br.to_bus: br for br in self.branches}

    def children(self) -> dict[str, list[FeederBranch]]:
        out: dict[str, list[FeederBranch]] = {b: [] for b in self.buses}
        for br in self.branches:
            out[br.from_bus].append(br)
        return out

    def load_matrix(self) -> tuple[list[tuple[str, int]], np.ndarray, np.ndarray]:
        """Loaded nodes and the maps from per-load levels to their P and Q at nominal voltage:
        p_node = P @ levels, q_node = Q @ levels (kW, kvar), one column per load."""
        nodes = sorted({(ld.bus, p) for ld in self.loads for p in ld.phases}, key=self.nodes.index)
        row = {n: i for i, n in enumerate(nodes)}
        p = np.zeros((len(nodes), len(self.loads)))
        q = np.zeros_like(p)
        for j, ld in enumerate(self.loads):
            for k, ph in enumerate(ld.phases):
                p[row[(ld.bus, ph)], j] += ld.p_kw[k]
                q[row[(ld.bus, ph)], j] += ld.q_kvar[k]
        return nodes, p, q


class FeederDataError(ValueError):
    """A feeder the LinDist3Flow data cannot describe (a loop, an unsupported element)."""


def _terminal(spec: str, n_conductors: int) -> tuple[str, list[int]]:
    """'632.2.3' -> ('632', [2, 3]); a bare bus name means nodes 1..n (OpenDSS' default)."""
    name, *nodes = spec.lower().split(".")
    return name, [int(n) for n in nodes] if nodes else list(range(1, n_conductors + 1))


def _delta_split(i: int, j: int) -> tuple[complex, complex]:
    """Shares of a load S connected from phase i to phase j that phases i and j carry,
    S_i = S V_i / (V_i - V_j) and S_j = -S V_j / (V_i - V_j), exact for balanced voltages."""
    vi, vj = np.exp(1j * PHASE_ANGLE[i]), np.exp(1j * PHASE_ANGLE[j])
    return complex(vi / (vi - vj)), complex(-vj / (vi - vj))


# OpenDSS load model -> (vdep_p, vdep_q); see FeederLoad. Models not listed act as constant power.
_LOAD_VDEP = {1: (0.0, 0.0), 2: (1.0, 1.0), 3: (0.0, 1.0), 5: (0.5, 0.5), 6: (0.0, 0.0), 7: (0.0, 1.0)}


def _per_phase(total: complex, nodes: list[int], phases: int, delta: bool) -> dict[int, complex]:
    """Split the complex power of a load or capacitor over its phases (delta pairs: see _delta_split)."""
    nodes = [n for n in nodes if n != 0] if not delta else nodes
    if delta or (phases == 1 and len(nodes) >= 2 and nodes[1] != 0):
        if phases == 1:
            pairs = [(nodes[0], nodes[1])]
        elif phases == 3:
            pairs = [(nodes[0], nodes[1]), (nodes[1], nodes[2]), (nodes[2], nodes[0])]
        else:
            raise FeederDataError(f"{phases}-phase delta connections are not supported")
        out: dict[int, complex] = {}
        for i, j in pairs:
            si, sj = _delta_split(i, j)
            out[i] = out.get(i, 0) + total / len(pairs) * si
            out[j] = out.get(j, 0) + total / len(pairs) * sj
        return out
    live = [n for n in nodes if n != 0][:phases]
    return {n: total / len(live) for n in live}


def feeder_data(source, name: str | None = None, loads: list[str] | None = None,
                source_bus: str | None = None) -> FeederData:
    """LinDist3Flow data of a compiled OpenDSS circuit.

    `source` is a `grid.feeder.FeederModel` (its own loads are taken, in its order,
    so `model.load_levels` lines up with `FeederData.loads`) or an opendssdirect context.
    Regulator ratios are the taps at the moment of extraction (solve first to get the
    taps OpenDSS settles on); `update_ratios` reads them again later.
    """
    dss = getattr(source, "dss", source)
    if name is None:
        name = getattr(source, "name", None) or dss.Circuit.Name()
    if loads is None and hasattr(source, "loads"):
        loads = [p.name for p in source.loads]
    if source_bus is None:
        dss.Circuit.SetActiveElement("Vsource.source")
        source_bus = dss.CktElement.BusNames()[0].split(".")[0].lower()

    buses_all: dict[str, FeederBus] = {}
    for bus in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(bus)
        phases = tuple(sorted(n for n in dss.Bus.Nodes() if n in PHASES))
        buses_all[bus.lower()] = FeederBus(bus.lower(), phases, float(dss.Bus.kVBase()))

    regulated = set()
    for reg in dss.RegControls.AllNames() if dss.RegControls.Count() else []:
        dss.RegControls.Name(reg)
        regulated.add(dss.RegControls.Transformer().lower())

    # Series elements as (element, bus1, nodes1, bus2, nodes2, z_full {(pi,pj): ohm}, ratio {phase}, kind, kva per phase)
    edges = []
    index = dss.Lines.First()
    while index > 0:
        element = f"Line.{dss.Lines.Name()}"
        dss.Circuit.SetActiveElement(element)
        if dss.CktElement.Enabled() and not (dss.CktElement.IsOpen(1, 0) or dss.CktElement.IsOpen(2, 0)):
            n = dss.Lines.Phases()
            (b1, n1), (b2, n2) = _terminal(dss.Lines.Bus1(), n), _terminal(dss.Lines.Bus2(), n)
            n1, n2 = n1[:n], n2[:n]
            length = dss.Lines.Length()  # RMatrix/XMatrix are per unit of the line's own length unit
            z = (np.asarray(dss.Lines.RMatrix()) + 1j * np.asarray(dss.Lines.XMatrix())).reshape(n, n) * length
            amps = float(dss.Lines.NormAmps())
            kva = amps * buses_all[b2].kv_ln if amps > 0 else None
            kind = "switch" if dss.Lines.IsSwitch() else "line"
            edges.append((element, b1, n1, b2, n2, z, None, kind, kva))
        index = dss.Lines.Next()

    index = dss.Transformers.First()
    while index > 0:
        tname = dss.Transformers.Name()
        element = f"Transformer.{tname}"
        dss.Circuit.SetActiveElement(element)
        if dss.CktElement.Enabled():
            if dss.Transformers.NumWindings() != 2:
                raise FeederDataError(f"{element}: only two-winding transformers are supported")
            n = dss.CktElement.NumPhases()
            terms = [_terminal(b, n) for b in dss.CktElement.BusNames()]
            wdg = []
            for w in (1, 2):
                dss.Transformers.Wdg(w)
                kv, kva, tap, r_pct = dss.Transformers.kV(), dss.Transformers.kVA(), dss.Transformers.Tap(), dss.Transformers.R()
                delta = dss.Transformers.IsDelta()
                kv_ln = kv / SQRT3 if (n > 1 or delta) else kv  # winding kV is line-to-line for 3-phase and delta
                wdg.append((kv_ln, kva, tap, r_pct))
            (b1, n1), (b2, n2) = terms
            n1 = [x for x in n1 if x != 0][:n] or list(range(1, n + 1))
            n2 = [x for x in n2 if x != 0][:n] or list(range(1, n + 1))
            # Leakage impedance referred to winding 2, per phase (equivalent wye).
            kva_phase = wdg[0][1] / n
            z_base = (wdg[1][0] ** 2) * 1000.0 / kva_phase
            z_pct = complex(wdg[0][3] + wdg[1][3], dss.Transformers.Xhl())
            z = np.eye(n) * z_pct / 100.0 * z_base
            ratio = (wdg[1][2] * wdg[1][0] / buses_all[b2].kv_ln) / (wdg[0][2] * wdg[0][0] / buses_all[b1].kv_ln)
            kind = "regulator" if tname.lower() in regulated else "transformer"
            edges.append((element, b1, n1, b2, n2, z, ratio, kind, kva_phase))
        index = dss.Transformers.Next()
    for cls in ("Reactors",):
        api = getattr(dss, cls, None)
        if api is not None and api.Count():
            raise FeederDataError(f"{cls} are not supported in the LinDist3Flow data")

    # Merge elements between the same pair of buses (a bank of single-phase regulators).
    merged: dict[frozenset, list] = {}
    for edge in edges:
        merged.setdefault(frozenset((edge[1], edge[3])), []).append(edge)
    adjacency: dict[str, list[frozenset]] = {b: [] for b in buses_all}
    for key in merged:
        for b in key:
            adjacency[b].append(key)

    # Breadth-first from the source: orients every branch away from the source and finds loops.
    order = [source_bus]
    seen = {source_bus}
    used: set[frozenset] = set()
    branches: list[FeederBranch] = []
    queue = deque([source_bus])
    while queue:
        parent = queue.popleft()
        for key in adjacency[parent]:
            if key in used or len(key) != 2:
                continue
            used.add(key)
            (child,) = key - {parent}
            if child in seen:
                raise FeederDataError(f"feeder {name}: loop through buses {parent} and {child}; LinDist3Flow needs a radial feeder")
            seen.add(child)
            order.append(child)
            queue.append(child)
            branches.append(_branch(merged[key], parent, child, buses_all))

    unreachable = [b for b in buses_all if b not in seen]
    buses = {b: buses_all[b] for b in order}

    wanted = {n.lower() for n in loads} if loads is not None else None
    feeder_loads: list[FeederLoad] = []
    load_names = []
    index = dss.Loads.First()
    while index > 0:
        lname = dss.Loads.Name().lower()
        if wanted is None or lname in wanted:
            load_names.append(lname)
            bus, nodes = _terminal(dss.CktElement.BusNames()[0], dss.Loads.Phases())
            if bus in seen:
                shares = _per_phase(complex(dss.Loads.kW(), dss.Loads.kvar()), nodes, dss.Loads.Phases(), dss.Loads.IsDelta())
                phases = tuple(sorted(shares))
                vp, vq = _LOAD_VDEP.get(dss.Loads.Model(), (0.0, 0.0))
                feeder_loads.append(FeederLoad(
                    lname, bus, phases, np.array([shares[p].real for p in phases]),
                    np.array([shares[p].imag for p in phases]), vp, vq))
            else:
                raise FeederDataError(f"feeder {name}: load {lname} sits at bus {bus}, which the source does not reach")
        index = dss.Loads.Next()
    if loads is not None:  # keep the caller's order (FeederModel.loads lines up with load_levels)
        position = {n.lower(): i for i, n in enumerate(loads)}
        feeder_loads.sort(key=lambda ld: position[ld.name])

    capacitors: list[FeederCapacitor] = []
    index = dss.Capacitors.First()
    while index > 0:
        cname = dss.Capacitors.Name()
        dss.Circuit.SetActiveElement(f"Capacitor.{cname}")
        n = dss.CktElement.NumPhases()
        bus, nodes = _terminal(dss.CktElement.BusNames()[0], n)
        if dss.CktElement.Enabled() and bus in seen:
            delta = dss.Capacitors.IsDelta()
            kv_ln = dss.Capacitors.kV() / SQRT3 if (n > 1 or delta) else dss.Capacitors.kV()
            steps = np.asarray(dss.Capacitors.States())
            on = float(steps.sum()) / len(steps) if len(steps) else 1.0
            total = dss.Capacitors.kvar() * on * (buses_all[bus].kv_ln / kv_ln) ** 2  # kvar at 1 pu of the bus base
            # Capacitors inject reactive power only; delta banks are spread evenly over their phases.
            live = [x for x in nodes if x != 0][: n if not delta or n > 1 else 2]
            phases = tuple(sorted(set(live)))
            capacitors.append(FeederCapacitor(cname.lower(), bus, phases, np.full(len(phases), total / len(phases))))
        index = dss.Capacitors.Next()

    if unreachable:
        loaded = {ld.bus for ld in feeder_loads}
        if loaded & set(unreachable):
            raise FeederDataError(f"feeder {name}: loaded buses not reached from the source: {sorted(loaded & set(unreachable))}")
    return FeederData(name, source_bus, buses, branches, feeder_loads, capacitors)


def _branch(edges: list, parent: str, child: str, buses: dict[str, FeederBus]) -> FeederBranch:
    """One tree branch from the elements joining parent and child, oriented parent -> child."""
    z_full = np.zeros((3, 3), dtype=complex)
    ratio_full = np.ones(3)
    phases: set[int] = set()
    kinds = []
    ratings = []
    for _element, b1, n1, _b2, n2, z, ratio, kind, kva in edges:
        forward = b1 == parent
        nodes = n2 if forward else n1  # phases named by the child side
        nodes = [x for x in nodes if x != 0]
        idx = [p - 1 for p in nodes]
        zz = z[: len(idx), : len(idx)]
        if ratio is not None and not forward:
            # Impedance was referred to winding 2 (now the parent side); refer it to the child.
            zz = zz / ratio ** 2
        z_full[np.ix_(idx, idx)] += zz
        for p in nodes:
            ratio_full[p - 1] = 1.0 if ratio is None else (ratio if forward else 1.0 / ratio)
        phases.update(nodes)
        kinds.append(kind)
        if kva is not None:
            ratings.append(kva)
    ph = tuple(sorted(phases))
    idx = [p - 1 for p in ph]
    kind = "regulator" if "regulator" in kinds else "transformer" if "transformer" in kinds else kinds[0]
    return FeederBranch(
        name=f"{parent}->{child}",
        from_bus=parent,
        to_bus=child,
        phases=ph,
        z_ohm=z_full[np.ix_(idx, idx)],
        kind=kind,
        ratio=ratio_full[idx],
        rating_kva=min(ratings) if ratings else None,
        elements=[e[0] for e in edges],
    )


def update_ratios(data: FeederData, source) -> None:
    """Read the present transformer and regulator taps into the data (after OpenDSS moved them)."""
    fresh = feeder_data(source, data.name, [ld.name for ld in data.loads], data.source_bus)
    by_name = {br.name: br for br in fresh.branches}
    for br in data.branches:
        br.ratio = by_name[br.name].ratio.copy()
