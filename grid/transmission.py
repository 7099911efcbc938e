"""The transmission side: a pandapower network whose boundary buses carry feeders.

Each boundary bus gets one load element, "feeders@<bus>", whose P and Q are the sum
over the feeders at that bus of multiplier x substation power. The network's own
loads (and, optionally, its generators) follow a system load shape.
"""

from __future__ import annotations

import warnings

import numpy as np

from grid.errors import PowerFlowError
from grid.networks import NetworkSummary, load_network
from grid.pf_results import PowerFlowResults, ResultReader
from grid.ratings import apply_ratings
from scenario.schema import Scenario, ScenarioError
from timeseries.profiles import load_shape


def complex_voltage(vm_pu: np.ndarray, va_deg: np.ndarray) -> np.ndarray:
    """Magnitude and angle to the complex voltage the feeders receive."""
    return vm_pu * np.exp(1j * np.deg2rad(va_deg))


def voltage_mismatch(vm_a: np.ndarray, va_a: np.ndarray, vm_b: np.ndarray, va_b: np.ndarray) -> float:
    """Largest distance (pu) between two sets of complex voltages given as magnitude and angle (deg)."""
    a, b = complex_voltage(vm_a, va_a), complex_voltage(vm_b, va_b)
    return float(np.max(np.abs(a - b))) if len(a) else 0.0


def resolve_bus(net: NetworkSummary, bus: int | str, where: str) -> int:
    """Map a scenario bus reference (pandapower index or bus name) to the bus index."""
    if isinstance(bus, int) and not isinstance(bus, bool):
        if bus in net.bus_index:
            return int(bus)
    else:
        matches = [i for i, name in zip(net.bus_index, net.bus_name) if name == str(bus)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ScenarioError(f"{where}: bus name {bus!r} is ambiguous ({len(matches)} buses carry it)")
        if str(bus).isdigit() and int(bus) in net.bus_index:
            return int(bus)
    lo, hi = min(net.bus_index), max(net.bus_index)
    raise ScenarioError(f"{where}: unknown bus {bus!r} in the transmission network (bus indices {lo}..{hi})")


def check_boundary_buses(scenario: Scenario, net: NetworkSummary) -> list[int]:
    """Resolve every feeder's bus, rejecting unknown buses, load-matching on load-less buses, and
    feeders at one bus that disagree on replacing its load."""
    buses = []
    modes: dict[int, tuple[int, str]] = {}
    for i, feeder in enumerate(scenario.feeders):
        bus = resolve_bus(net, feeder.bus, f"feeders.{i}.bus")
        first = modes.setdefault(bus, (i, feeder.bus_load))
        if first[1] != feeder.bus_load:
            raise ScenarioError(
                f"feeders.{i}.bus_load: {feeder.bus_load!r} but feeders.{first[0]} at the same bus {bus} says {first[1]!r}"
            )
        if feeder.multiplier == "match_bus_load" and net.load_at(bus) <= 0:
            raise ScenarioError(
                f"feeders.{i}.multiplier: 'match_bus_load' but bus {bus} carries no load; give a number of copies"
            )
        buses.append(bus)
    return buses


Q_WARN_SHARE = 0.2  # 'match_bus_load' copies whose Q is off the bus's by more than this share of its |S|: warned


class TransmissionModel:
    """pandapower network with feeder load elements at the boundary buses."""

    def __init__(self, scenario: Scenario, net=None):
        self._solved_once = False
        self._reader: ResultReader | None = None  # set once its results agree with pandapower's
        self.results: PowerFlowResults | None = None
        self.net = net if net is not None else load_network(scenario.transmission.network)
        apply_ratings(self.net, scenario.transmission.ratings, scenario.transmission.network)
        net = self.net
        self.feeder_bus = np.array(check_boundary_buses(scenario, NetworkSummary.of(net)), dtype=int)
        self.boundary_buses = np.array(sorted(set(self.feeder_bus.tolist())), dtype=int)
        self._feeder_pos = np.searchsorted(self.boundary_buses, self.feeder_bus)
        n_feeders = len(self.feeder_bus)

        self.system_level = load_shape(scenario.transmission.load_profile, scenario.time.index())
        self._scale_generation = scenario.transmission.scale_generation
        self._base_gen = net.gen.p_mw.to_numpy(copy=True)
        self._dispatch = np.full(len(net.gen), np.nan)  # MW from a coordinator; NaN: follow the load level
        self._costs = _cost_table(net)
        self._base_sgen = net.sgen.p_mw.to_numpy(copy=True)
        self._n_own_loads = len(net.load)
        self._boundary_pos = net.bus.index.get_indexer(self.boundary_buses)

        in_service = net.load.in_service.to_numpy()
        at_bus = {int(b): (net.load.bus == b).to_numpy() & in_service for b in self.boundary_buses}
        own_at_bus = {b: float(net.load.p_mw.to_numpy()[mask].sum()) for b, mask in at_bus.items()}
        own_q_at_bus = {b: float(net.load.q_mvar.to_numpy()[mask].sum()) for b, mask in at_bus.items()}
        replace = {int(b) for f, b in zip(scenario.feeders, self.feeder_bus) if f.bus_load == "replace"}
        replaced = np.zeros((len(self.boundary_buses), 2))  # base P, Q the feeders take over per bus
        for j, b in enumerate(self.boundary_buses):
            if int(b) in replace:
                replaced[j] = net.load[["p_mw", "q_mvar"]].to_numpy()[at_bus[int(b)]].sum(axis=0)
                net.load.loc[at_bus[int(b)], "in_service"] = False

        import pandapower as pp

        for b in self.boundary_buses:  # appended after the network's own loads, in boundary bus order
            pp.create_load(net, int(b), p_mw=0.0, q_mvar=0.0, name=f"feeders@{b}")
        # P and Q of every load, the network's own first and then the feeder loads (as in net.load).
        self._base_load = net.load[["p_mw", "q_mvar"]].to_numpy(dtype=float, copy=True)[: self._n_own_loads]
        self._load_pq = net.load[["p_mw", "q_mvar"]].to_numpy(dtype=float, copy=True)
        # The feeders start from the network's own operating point at the first step: the feeder
        # load elements carry the load they replace, so this first solve is the network as given.
        self.set_step(0)
        self._load_pq[self._n_own_loads :] = replaced * self.system_level[0]
        self.solve(" for the initial operating point")
        self.initial_voltage = self.boundary_voltage()

        matching = np.array([f.multiplier == "match_bus_load" for f in scenario.feeders])
        feeders_at_bus = np.bincount(self._feeder_pos[matching], minlength=len(self.boundary_buses))
        self._match_target_mw = np.full(n_feeders, np.nan)
        self.multipliers = np.full(n_feeders, np.nan)
        self._match_target_mvar = np.full(n_feeders, np.nan)
        self._match_q = np.array([f.match_q for f in scenario.feeders], dtype=bool)
        self._feeder_labels = [f.label for f in scenario.feeders]
        # Mvar each feeder's boundary adds to its copies' Q (match_q): zero unless asked for.
        self.q_correction = np.zeros(n_feeders)
        self.match_warnings: list[str] = []  # for the federate to show, once, after step 0's first solve
        for i, feeder in enumerate(scenario.feeders):
            if feeder.multiplier == "match_bus_load":
                n_here = feeders_at_bus[self._feeder_pos[i]]
                self._match_target_mw[i] = own_at_bus[int(self.feeder_bus[i])] / n_here * self.system_level[0]
                self._match_target_mvar[i] = own_q_at_bus[int(self.feeder_bus[i])] / n_here * self.system_level[0]
            else:
                self.multipliers[i] = float(feeder.multiplier)

    # -- inputs ---------------------------------------------------------------
    def set_step(self, k: int) -> None:
        """Scale the network's own loads and generation to the system level of step k."""
        level = self.system_level[k]
        n = self._n_own_loads
        self._load_pq[:n] = self._base_load * level
        if self._scale_generation:
            self.net.gen["p_mw"] = np.where(np.isnan(self._dispatch), self._base_gen * level, self._dispatch)
            if len(self._base_sgen):
                self.net.sgen["p_mw"] = self._base_sgen * level
        elif not np.isnan(self._dispatch).all():
            self.net.gen["p_mw"] = np.where(np.isnan(self._dispatch), self._base_gen, self._dispatch)

    def set_dispatch(self, p_mw: np.ndarray) -> None:
        """Generator set-points (MW per row of net.gen; NaN leaves a unit to the load level),
        in force from the next `set_step` until replaced. The slack takes what they miss."""
        p_mw = np.asarray(p_mw, dtype=float)
        if p_mw.shape != self._dispatch.shape:
            raise ValueError(f"generator dispatch has {p_mw.size} values for {self._dispatch.size} generators")
        self._dispatch = p_mw.copy()

    def generation_cost(self) -> float:
        """Cost rate (currency per hour) of the solved operating point under the network's
        polynomial costs (poly_cost); units without a cost row count zero."""
        total = 0.0
        for table, rows, c0, c1, c2 in self._costs:
            p = self.results.p_mw[table][rows]
            total += float(np.sum(c0 + c1 * p + c2 * p * p))
        return total

    def _write_loads(self) -> None:
        # Whole-column assignment: per-cell .loc writes cost more than the power flow itself.
        self.net.load["p_mw"] = self._load_pq[:, 0]
        self.net.load["q_mvar"] = self._load_pq[:, 1]

    def fix_multipliers(self, p_total_kw: np.ndarray, q_total_kvar: np.ndarray | None = None) -> None:
        """Set 'match_bus_load' multipliers from the feeders' first substation power: the copies
        carry the bus's own P. Their Q then follows the feeder's power factor, not the bus's: with
        `match_q` a fixed boundary Q makes up the difference, else a difference of more than
        Q_WARN_SHARE of the bus's apparent power is put in `match_warnings`."""
        todo = np.isnan(self.multipliers)
        if not todo.any():
            return
        if np.any(p_total_kw[todo] <= 0):
            bad = int(np.flatnonzero(todo & (p_total_kw <= 0))[0])
            raise PowerFlowError(f"feeder #{bad} draws no active power at the start; 'match_bus_load' needs a positive load")
        self.multipliers[todo] = self._match_target_mw[todo] * 1000.0 / p_total_kw[todo]
        if q_total_kvar is None:
            return
        for i in np.flatnonzero(todo):
            copies = self.multipliers[i] * q_total_kvar[i] / 1000.0
            target, p_target = self._match_target_mvar[i], self._match_target_mw[i]
            if self._match_q[i]:
                self.q_correction[i] = target - copies
                continue
            apparent = float(np.hypot(p_target, target))
            if apparent > 0 and abs(target - copies) > Q_WARN_SHARE * apparent:
                self.match_warnings.append(
                    f"feeder {self._feeder_labels[i]}: 'match_bus_load' matches P only: its {self.multipliers[i]:.3g} copies "
                    f"draw {copies:.3g} Mvar where bus {int(self.feeder_bus[i])}'s own load drew {target:.3g} Mvar "
                    f"({abs(target - copies) / apparent:.0%} of its apparent power, over {Q_WARN_SHARE:.0%}); "
                    "set match_q: true to make up the difference at the boundary"
                )

    def set_feeder_power(self, p_total_kw: np.ndarray, q_total_kvar: np.ndarray) -> None:
        """Load each boundary bus with the sum of multiplier x feeder power (kW -> MW)."""
        n, own = len(self.boundary_buses), self._n_own_loads
        self._load_pq[own:, 0] = np.bincount(self._feeder_pos, weights=self.multipliers * p_total_kw, minlength=n) / 1000.0
        q = self.multipliers * q_total_kvar + self.q_correction * 1000.0  # + 0.0 exactly without match_q
        self._load_pq[own:, 1] = np.bincount(self._feeder_pos, weights=q, minlength=n) / 1000.0

    # -- solve ----------------------------------------------------------------
    def run(self, k: int, p_total_kw: np.ndarray, q_total_kvar: np.ndarray, label: str = "") -> None:
        """One transmission solve at step k with the feeders' total substation powers."""
        if k == 0:
            self.fix_multipliers(p_total_kw, q_total_kvar)
        self.set_step(k)
        self.set_feeder_power(p_total_kw, q_total_kvar)
        self.solve(label)

    def solve(self, label: str = "") -> None:
        """AC power flow; the internal model is built once and only injections are updated after.

        After the first solve pandapower stops at the voltages (`only_v_results`) and
        `ResultReader` computes the results from them: pandapower's writing of its result tables
        costs two thirds of a recycled solve (see grid.pf_results).
        numba stays off: its JIT compilation costs more per process than it saves here, and
        pandapower's Newton-Raphson already runs in lightsim2grid's compiled solver."""
        import pandapower as pp

        self._write_loads()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self._solved_once:
                    pp.runpp(self.net, init="results", recycle=dict(trafo=False, gen=True, bus_pq=True), numba=False)
                else:
                    pp.runpp(self.net, numba=False)
        except pp.LoadflowNotConverged:
            raise _not_converged(label) from None
        if self._reader is None:
            self.results = PowerFlowResults.from_tables(self.net)
        elif not self.net._ppc["success"]:  # only_v_results returns without raising
            raise _not_converged(label)
        else:
            self.results = self._reader.read(self.net)
        if not self._solved_once:
            self._solved_once = True
            reader = ResultReader(self.net)
            if reader.supported() and not reader.read(self.net).disagreement(self.results):
                self._reader = reader
                self.net._options["only_v_results"] = True

    # -- checkpoints ----------------------------------------------------------
    def state(self) -> dict:
        """What the next step needs from this one: the feeder multipliers (fixed at step 0),
        the generator dispatch in force, and the voltages the next power flow starts from.
        The recycled Newton-Raphson starts from pandapower's internal bus table, not from
        `res_bus`, so that is what is saved (JSON-ready)."""
        from pandapower.pypower.idx_bus import VA, VM

        ppc = self.net._ppc
        extra = {"q_correction_mvar": self.q_correction.tolist()} if self.q_correction.any() else {}
        return {
            **extra,
            "multipliers": self.multipliers.tolist(),
            "dispatch_mw": self._dispatch.tolist(),
            "ppc_bus": [ppc["bus"][:, VM].tolist(), ppc["bus"][:, VA].tolist()],
            "ppci_bus": [ppc["internal"]["bus"][:, VM].tolist(), ppc["internal"]["bus"][:, VA].tolist()],
            "res_bus": [self.results.vm_pu.tolist(), self.results.va_degree.tolist()],
        }

    def restore(self, state: dict) -> None:
        """Continue from a saved `state` on a freshly built model (whose own first solve made
        pandapower's internal tables): the next `run` solves as the saved model would have."""
        from pandapower.pypower.idx_bus import VA, VM

        ppc = self.net._ppc
        for table, (vm, va) in ((ppc["bus"], state["ppc_bus"]), (ppc["internal"]["bus"], state["ppci_bus"])):
            if len(vm) != len(table):
                raise ValueError(f"checkpoint holds {len(vm)} buses, the network model has {len(table)}")
            table[:, VM], table[:, VA] = vm, va
        self.net.res_bus["vm_pu"], self.net.res_bus["va_degree"] = state["res_bus"]
        self.results.vm_pu, self.results.va_degree = (np.asarray(v, dtype=float) for v in state["res_bus"])
        self.multipliers = np.asarray(state["multipliers"], dtype=float)
        if "q_correction_mvar" in state:
            self.q_correction = np.asarray(state["q_correction_mvar"], dtype=float)
        self.set_dispatch(np.asarray(state["dispatch_mw"], dtype=float))

    # -- outputs --------------------------------------------------------------
    def boundary_voltage(self) -> tuple[np.ndarray, np.ndarray]:
        """Magnitude (pu) and angle (deg) at each boundary bus, in boundary_buses order."""
        return self.results.vm_pu[self._boundary_pos], self.results.va_degree[self._boundary_pos]

    def boundary_load(self) -> tuple[np.ndarray, np.ndarray]:
        """P (MW) and Q (Mvar) of the feeder load element at each boundary bus (constant power:
        what the last solve was given)."""
        own = self._n_own_loads
        return self._load_pq[own:, 0].copy(), self._load_pq[own:, 1].copy()

    @property
    def bus_names(self) -> list[str]:
        return [str(b) for b in self.net.bus.index]

    @property
    def branch_names(self) -> list[str]:
        return [f"line:{i}" for i in self.net.line.index] + [f"trafo:{i}" for i in self.net.trafo.index]

    def bus_voltages(self) -> tuple[np.ndarray, np.ndarray]:
        return self.results.vm_pu, self.results.va_degree

    def branch_loading(self) -> np.ndarray:
        return np.concatenate([self.results.line_loading, self.results.trafo_loading])


def _not_converged(label: str) -> PowerFlowError:
    return PowerFlowError(f"transmission power flow did not converge{label}")


def _cost_table(net) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per element table with costs: (table, result rows, c0, c1, c2), in-service units only."""
    if "poly_cost" not in net or not len(net.poly_cost):
        return []
    out = []
    for table in ("ext_grid", "gen", "sgen"):
        costs = net.poly_cost[net.poly_cost.et == table]
        elements = net[table]
        costs = costs[costs.element.isin(elements.index[elements.in_service.astype(bool)])]
        if len(costs):
            rows = elements.index.get_indexer(costs.element.to_numpy())
            out.append((table, rows, *(costs[c].to_numpy(dtype=float) for c in ("cp0_eur", "cp1_eur_per_mw", "cp2_eur_per_mw2"))))
    return out
