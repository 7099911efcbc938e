"""The distribution side: one three-phase OpenDSS feeder in its own DSS context.

Each feeder owns a DSS-Python context, so several feeders live in one process
without sharing OpenDSS state. The feeder's `Vsource.source` is driven by the
boundary voltage; its terminal powers are the substation P and Q per phase.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import opendssdirect
import pandas as pd
from altdss.enums import SetterFlags
from dss import DSSException

from feeder_models import BUNDLED_FEEDERS, bundled_feeder_master
from feeder_models.synthetic import write_synthetic_feeder
from grid import dss_state
from grid.ders import DerFleet, feeder_loads
from grid.ders.placement import delta_feeder
from grid.errors import FeederModelError, PowerFlowError
from grid.setpoints import Setpoints

DEFAULT_CONTROL_ITERATIONS = 100  # unless a feeder's `solver.max_control_iterations` says otherwise
# With Volt-VAR or Volt-Watt: OpenDSS acts on a regulator (15 s delay) only once no inverter
# (no delay) has an action pending, so every tap round waits for all inverters to settle again.
# IEEE 8500 with 100 PV systems needed up to 249 rounds at step 0 (357 at volt_var_delta_q 0.1),
# IEEE 34 up to 169 (261). See docs/scenario.md, `solver`.
INVERTER_CONTROL_ITERATIONS = 1000
VOLTAGE_BAND = (0.95, 1.05)  # pu; nodes outside it are counted every step
REPLAY_REPORT_SECONDS = 2.0  # how often a feeder replaying its journal tells how far it got
_NO_DER_LOADS = np.empty(0)  # read-only default: a feeder without DERs that are loads


@dataclass
class StepReadings:
    """What a feeder federate publishes about one solve."""

    p_kw: np.ndarray  # substation power drawn per phase
    q_kvar: np.ndarray
    losses: tuple[float, float]  # kW, kvar
    node_vm_pu: np.ndarray
    stats: tuple  # FeederModel.voltage_stats
    ders: dict[str, np.ndarray]  # DerFleet.readings


def dss_error(exc: Exception) -> str:
    """OpenDSS's error on one line, ending with the file and line it arose at (OpenDSS lists the
    files being read innermost first, one per line: a one-line error would lose them)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    where = [line for line in lines if line.startswith("[file:")]
    text = " ".join(line for line in lines if not line.startswith("[file:"))
    found = re.match(r'\[file: "(.*)", line: (\d+)\]', where[0]) if where else None
    return f"{text} (at {found.group(1)}, line {found.group(2)})" if found else text


def feeder_master_path(model: str, seed: int = 0) -> Path:
    """Master file of a bundled feeder, a synthetic feeder ('synthetic:<buses>', generated once
    into the user's cache, since it is the same for the same size and seed), or a .dss path."""
    if model in BUNDLED_FEEDERS:
        return bundled_feeder_master(model)
    if model.startswith("synthetic:"):
        buses = int(model.split(":", 1)[1])
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tandem" / "synthetic" / f"{buses}-seed{seed}"
        master = cache / "master.dss"
        if not master.is_file():
            cache.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{buses}-", dir=cache.parent))  # same file system as cache
            write_synthetic_feeder(staging, buses, seed=seed)
            try:
                os.replace(staging, cache)  # atomic: a concurrent run either sees all files or none
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)  # another run got there first
        return master
    return Path(model)


class FeederModel:
    """An OpenDSS feeder with its source set from the transmission side."""

    def __init__(self, name: str, model: str, seed: int = 0):
        self.name = name
        self.master = feeder_master_path(model, seed)
        self.dss = opendssdirect.NewContext()
        # Run scripts (the official Run_IEEE123Bus.DSS) end in `Show ...` reports, which OpenDSS
        # opens in an editor: without one it fails with a bare "(#704) Error 704". The report is
        # still written beside the model, as OpenDSS does; no editor is started.
        self.dss.Basic.AllowEditor(False)
        self.dss.Basic.AllowForms(False)  # plots and message boxes: nothing to show them on
        cwd = os.getcwd()
        try:
            self.dss.Text.Command(f'compile "{self.master}"')
        except Exception as exc:  # DSS raises its own exception types; all mean "bad model"
            raise FeederModelError(f"feeder {name}: cannot compile {self.master}: {dss_error(exc)}") from None
        finally:
            os.chdir(cwd)  # OpenDSS moves the process into the model's folder
        if self.dss.Circuit.NumNodes() == 0:
            raise FeederModelError(f"feeder {name}: {self.master} defines no circuit")
        if "source" not in [n.lower() for n in self.dss.Vsources.AllNames()]:
            raise FeederModelError(f"feeder {name}: {self.master} has no Vsource.source to drive from the boundary")
        # Regulators with several taps to travel need more than the default 10 control rounds.
        self.dss.Solution.MaxControlIterations(DEFAULT_CONTROL_ITERATIONS)
        self.dss.Vsources.Name("source")
        self._only_vsource = self.dss.Vsources.Count() == 1
        self._base_angle = self.dss.Vsources.AngleDeg()
        self.dss.Circuit.SetActiveElement("Vsource.source")
        if self.dss.CktElement.NumPhases() != 3:
            raise FeederModelError(f"feeder {name}: Vsource.source must be three-phase")
        source_bus = self.dss.CktElement.BusNames()[0].split(".")[0].lower()
        names = self.dss.Circuit.AllNodeNames()
        # The source bus stands for the transmission side; feeder statistics are about the feeder.
        self._feeder_nodes = np.array([n.split(".")[0].lower() != source_bus for n in names])
        self.node_names = [n for n, keep in zip(names, self._feeder_nodes) if keep]
        kept = np.flatnonzero(self._feeder_nodes)
        contiguous = len(kept) and kept[-1] - kept[0] + 1 == len(kept)
        # The source bus's nodes usually come first: a slice then, no copy.
        self._feeder_node_index = slice(int(kept[0]), int(kept[-1]) + 1) if contiguous else kept
        # The substation bus: the first three-phase bus downstream of the source.
        self.head_bus = next(
            (b for b in self.dss.Circuit.AllBusNames() if b.lower() != source_bus and self._bus_phases(b) == 3), source_bus
        )
        try:
            self.loads = feeder_loads(self.dss)
        except ValueError as exc:
            raise FeederModelError(f"feeder {name}: {self.master}: {exc}") from None
        self._load_kw = np.array([p.kw for p in self.loads])
        # An ungrounded delta feeder (all loads delta, IEEE 37): its node-to-ground voltages float,
        # so its voltages are line to line, in pu of the line-to-line base.
        self._line_to_line = self._line_to_line_pairs(names) if delta_feeder(self.loads) else None
        # Loads keep their power factor as their level changes, so a kW write per load will do.
        for i, point in enumerate(self.loads):
            self.dss.Loads.Idx(i + 1)
            apparent = np.hypot(point.kw, point.kvar)
            if apparent > 0:
                self.dss.Loads.PF(float(np.copysign(point.kw / apparent, point.kvar)) if point.kvar else 1.0)
        self.load_levels: np.ndarray | None = None  # [load, step], set by build_feeder
        self.fleet: DerFleet | None = None
        # Every input since the start of the run, kept where a checkpoint cannot capture the
        # circuit's state (inverter controls): such a feeder is restored by replaying them.
        self.journal: list[list] | None = None
        self.alt = self.dss.to_altdss()  # batch reads: one call per element class and step
        self._circuit = self.dss.to_dss_python().ActiveCircuit  # arrays come back as numpy, not lists
        self._source = self.alt.Vsource["source"]  # its powers in one call, complex

    def _line_to_line_pairs(self, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each feeder node (in `node_names` order): its own index, the index of the next phase
        of its bus (cyclically: 1-2, 2-3, 3-1; a two-phase bus's nodes both give 1-2) and the
        line-to-line base in V. A bus with one node keeps its line-to-ground voltage (index
        len(names): a zero appended to the voltages)."""
        where = {n.lower(): i for i, n in enumerate(names)}
        own, other, base = [], [], []
        for name in self.node_names:
            bus, node = name.lower().rsplit(".", 1)
            self.dss.Circuit.SetActiveBus(bus)
            nodes = sorted(self.dss.Bus.Nodes())
            kv_ln = self.dss.Bus.kVBase()
            own.append(where[name.lower()])
            if len(nodes) < 2:
                other.append(len(names))
                base.append(kv_ln * 1000.0)
                continue
            at = nodes.index(int(node))
            partner = nodes[(at + 1) % len(nodes)] if len(nodes) > 2 or at == 0 else nodes[0]
            other.append(where[f"{bus}.{partner}"])
            base.append(kv_ln * 1000.0 * math.sqrt(3))
        return np.array(own), np.array(other), np.array(base)

    def _bus_phases(self, bus: str) -> int:
        self.dss.Circuit.SetActiveBus(bus)
        return self.dss.Bus.NumNodes()

    def run(self, voltage_pu: complex, k: int, label: str = "") -> None:
        """One feeder solve of step k with the given complex boundary voltage (pu)."""
        if self.journal is not None:
            self.journal.append(["solve", k, voltage_pu.real, voltage_pu.imag])
        # np.angle's own arithmetic, without its array handling; math.degrees multiplies as np.degrees.
        self.set_source(abs(voltage_pu), math.degrees(np.arctan2(voltage_pu.imag, voltage_pu.real)))
        der_kw = self.fleet.apply(k) if self.fleet is not None else np.empty(0)
        self.set_load_levels(self.load_levels[:, k], der_kw)
        self.solve(label)

    def step(self, voltage_pu: complex, k: int, label: str = "") -> StepReadings:
        """One solve of step k (`run`) and the readings a feeder federate publishes about it."""
        self.run(voltage_pu, k, label)
        p, q = self.substation_power()
        losses = self.losses()
        nodes = self.node_voltages()
        return StepReadings(p, q, losses, nodes, self.voltage_stats(nodes), self.fleet.readings(k))

    def set_setpoints(self, setpoints: Setpoints) -> None:
        """DER set-points from outside, in force from the next solve."""
        if self.journal is not None:
            self.journal.append(["setpoints", setpoints.to_dict()])
        self.fleet.set_setpoints(setpoints)

    def end_step(self) -> None:
        """The step's solution is final: book the DERs' energy (DerFleet.advance)."""
        if self.journal is not None:
            self.journal.append(["end"])
        if self.fleet is not None:
            self.fleet.advance()

    def state(self) -> dict:
        """What the next step needs from this one, taken after the step's solve and before
        `end_step` (see grid.dss_state): JSON-ready. A feeder with a journal adds it."""
        fleet = self.fleet
        state = {
            "fleet": fleet.state(),
            "circuit": dss_state.capture(self.dss, fleet.regulators, fleet.capacitors),
        }
        if self.journal is not None:
            state["journal"] = list(self.journal)
        return state

    def restore(self, state: dict, on_replay: Callable[[int, int], None] | None = None) -> float:
        """Continue from a saved `state` on a freshly built feeder, as if its step had just been
        solved and ended. Returns the relative mismatch of the rebuilt circuit (round-off): of
        the admittances, or of the node voltages for a replayed journal (0.0: to the bit).
        `on_replay(done, total)` hears now and then how far a journal's replay got."""
        if "journal" in state:
            return self._replay(state, on_replay)
        self.fleet.restore(state["fleet"])
        worst = dss_state.restore(self.dss, state["circuit"], self.fleet.pv_caps())
        self.end_step()
        return worst

    def _replay(self, state: dict, on_replay: Callable[[int, int], None] | None) -> float:
        """Restore by feeding a freshly built feeder every input of the saved journal, in order,
        through the calls the federate made. OpenDSS's inverter controls (InvControl) carry
        state from step to step (the last Q and P limits they moved from, adaptive step sizes,
        the voltages of earlier iterations) that no API reads or writes; the same inputs in the
        same order rebuild it, and everything else, to the bit."""
        journal = state["journal"]
        self.journal = []
        solves = sum(1 for entry in journal if entry[0] == "solve")
        done, reported = 0, time.monotonic()
        for entry in journal:
            kind = entry[0]
            if kind == "solve":
                self.step(complex(entry[2], entry[3]), int(entry[1]), f" at step {entry[1]} (replaying the journal)")
                done += 1
                if on_replay and time.monotonic() - reported >= REPLAY_REPORT_SECONDS:
                    on_replay(done, solves)
                    reported = time.monotonic()
            elif kind == "end":
                self.end_step()
            elif kind == "setpoints":
                self.set_setpoints(Setpoints.from_journal(entry[1]))
            else:
                raise ValueError(f"feeder {self.name}: unknown journal entry {kind!r} in the checkpoint")
        if on_replay:
            on_replay(solves, solves)
        saved = np.asarray(state["circuit"]["node_voltages"])
        now = np.asarray(dss_state.capture(self.dss, [], [])["node_voltages"])
        if now.shape != saved.shape:
            raise ValueError(f"feeder {self.name}: the checkpoint's circuit has {saved.size // 2} nodes, the feeder {now.size // 2}")
        worst = float(np.max(np.abs(now - saved)) / max(float(np.max(np.abs(saved))), 1e-300))
        if self.fleet.state() != state["fleet"]:
            worst = max(worst, 1.0)  # the DERs' bookkeeping did not come out the same
        self.end_step()
        return worst

    def set_source(self, vm_pu: float, va_deg: float) -> None:
        """Drive the source with the boundary voltage; the model's own angle offset is kept."""
        vsources = self.dss.Vsources
        if not self._only_vsource:  # with one Vsource it stays the active one
            vsources.Name("source")
        vsources.PU(vm_pu)
        vsources.AngleDeg(self._base_angle + va_deg)

    def set_load_levels(self, levels: np.ndarray, der_kw: np.ndarray = _NO_DER_LOADS) -> None:
        """Each load at its own level (per unit of its nominal power); the DERs that are loads
        (EV chargers, flexible loads), created after the feeder's own loads, at their kW.

        One batch write for all loads. A plain batch write invalidates the system admittance
        matrix and doubles the solve; AvoidFullRecalc updates the loads as the classic Loads
        interface does, leaving the matrix valid."""
        kw = self._load_kw * levels
        if len(der_kw):
            kw = np.concatenate([kw, der_kw])
        self.alt.Load._set_kW(kw, SetterFlags.AvoidFullRecalc)

    def set_solver(self, solver) -> None:
        """A scenario's `solver` settings (scenario.schema.SolverSpec); None keeps the model's own,
        or Tandem's control rounds. After the DERs: the defaults depend on their inverter controls."""
        if solver.max_iterations is not None:
            self.dss.Solution.MaxIterations(solver.max_iterations)
        inverters = self.fleet is not None and self.fleet.inverter_controls
        default_rounds = INVERTER_CONTROL_ITERATIONS if inverters else DEFAULT_CONTROL_ITERATIONS
        self.dss.Solution.MaxControlIterations(solver.max_control_iterations or default_rounds)
        if solver.algorithm is not None:
            self.dss.Text.Command(f"set algorithm={solver.algorithm}")
        if self.fleet is not None:
            self.fleet.controllers["controls"].set_volt_var_delta_q(solver.volt_var_delta_q)

    def solve(self, label: str = "") -> None:
        solution = self.dss.Solution
        try:
            solution.Solve()
        except DSSException as exc:  # e.g. controls still moving after MaxControlIterations rounds
            reason = str(exc).strip().splitlines()[0]
            hint = ""  # before OpenDSS's own words, which end the message
            if "control" in reason.lower():
                hint = f" (raise this feeder's solver.max_control_iterations, now {solution.MaxControlIterations()}"
                controls = self.fleet.controllers["controls"] if self.fleet is not None else None
                if controls is not None and controls.inverter_controls:
                    # Measured on IEEE 8500: inverters close to each other swap reactive power
                    # round after round at OpenDSS's adaptive step, and settle at 0.1.
                    step = controls.volt_var_delta_q
                    hint += ("; PV inverters that hunt each other settle with a smaller solver.volt_var_delta_q, "
                             + ("now adaptive, e.g. 0.1)" if step is None else f"now {step:g})"))
                else:
                    hint += ", or turn off controls that hunt)"
            raise PowerFlowError(f"feeder {self.name}: OpenDSS could not solve{label}{hint}: {reason}") from None
        if not solution.Converged():
            raise PowerFlowError(
                f"feeder {self.name}: OpenDSS power flow did not converge{label}; raise this feeder's "
                f"solver.max_iterations (now {solution.MaxIterations()}) or try solver.algorithm: newton"
            )

    def substation_power(self) -> tuple[np.ndarray, np.ndarray]:
        """Power drawn from the source per phase: P (kW) and Q (kvar), phases a, b, c."""
        drawn = -self._source.Powers()[:3]
        return drawn.real, drawn.imag

    def node_voltages(self) -> np.ndarray:
        """Voltage magnitude (pu) of every feeder node, in `node_names` order."""
        if self._line_to_line is not None:
            return self._line_to_line_voltages()
        v = self._circuit.AllBusVmagPu
        if len(v) != len(self._feeder_nodes):  # readings go by position: a new node would shift them
            raise FeederModelError(f"feeder {self.name}: a DER connects to a node (bus.phase) the feeder does not have")
        return v[self._feeder_node_index]

    def _line_to_line_voltages(self) -> np.ndarray:
        """A delta feeder's voltages: each node's to the next phase of its bus, in pu of line to line."""
        parts = self._circuit.AllBusVolts
        if len(parts) != 2 * len(self._feeder_nodes):
            raise FeederModelError(f"feeder {self.name}: a DER connects to a node (bus.phase) the feeder does not have")
        v = np.append(parts[0::2] + 1j * parts[1::2], 0.0)
        own, other, base = self._line_to_line
        return np.abs(v[own] - v[other]) / base

    def dead_nodes(self, v: np.ndarray) -> list[str]:
        """Feeder nodes at zero voltage after a solve: isolated from the source, e.g. a load on a
        bus the model never connects (a misspelt bus name creates a new, unconnected bus)."""
        return [self.node_names[i] for i in np.flatnonzero(v < 1e-6)]

    def losses(self) -> tuple[float, float]:
        """Active (kW) and reactive (kvar) losses of the whole feeder circuit."""
        watts, vars_ = self.dss.Circuit.Losses()
        return watts / 1000.0, vars_ / 1000.0

    def voltage_stats(self, v: np.ndarray | None = None) -> tuple[float, int, float, int, int, float]:
        """Lowest and highest node voltage (pu) with their indices into `node_names`, the count of
        nodes outside VOLTAGE_BAND, and the voltage unbalance factor (V2/V1) at the head bus;
        `v` is node_voltages() when the caller already has it."""
        v = self.node_voltages() if v is None else v
        lo, hi = int(v.argmin()), int(v.argmax())
        outside = 0
        if v[lo] < VOLTAGE_BAND[0] or v[hi] > VOLTAGE_BAND[1]:  # else no node can be outside
            outside = int(np.count_nonzero((v < VOLTAGE_BAND[0]) | (v > VOLTAGE_BAND[1])))
        self.dss.Circuit.SetActiveBus(self.head_bus)
        _, v1, v2 = self.dss.Bus.SeqVoltages()
        return float(v[lo]), lo, float(v[hi]), hi, outside, float(v2 / v1) if v1 else 0.0


def solar_site_time(index: pd.DatetimeIndex, longitude_deg: float) -> pd.DatetimeIndex:
    """Naive run times are local standard time at the site: its longitude's whole-hour UTC offset."""
    if index.tz is not None:
        return index
    offset = timezone(timedelta(hours=round(longitude_deg / 15.0)))
    return index.tz_localize(offset)


def build_feeder(spec, scenario) -> FeederModel:
    """A scenario's feeder: the compiled model, each load's profile over the run, and its DERs."""
    from timeseries.profiles import load_shape
    from timeseries.sources import profile_values

    model = FeederModel(spec.label, spec.model, spec.seed)
    index = scenario.time.index()
    if isinstance(spec.load_profile, str):
        base = load_shape(spec.load_profile, index)
    else:
        base = profile_values(spec.load_profile, index, "pu")
    n_loads = len(model.loads)
    diversity = spec.load_diversity
    if diversity.enabled and n_loads > 1:
        from timeseries.diversity import diversified_profiles

        model.load_levels = diversified_profiles(
            base, index, n_loads, seed=spec.seed, scale_sigma=diversity.scale_sigma, max_shift=diversity.max_shift
        )
    else:
        model.load_levels = np.tile(base, (n_loads, 1))
    irradiance = np.zeros(len(index))
    solar = scenario.solar
    if spec.pv.penetration > 0 and solar.file is not None:
        irradiance = profile_values(solar.file, index, "W/m2")
    elif spec.pv.penetration > 0:
        from timeseries.solar import cloudy_irradiance

        irradiance = cloudy_irradiance(
            solar_site_time(index, solar.longitude_deg), solar.latitude_deg, solar.longitude_deg,
            variability=solar.variability, seed=spec.seed,
        )
    local_hours = np.asarray(index.hour + index.minute / 60.0 + index.second / 3600.0, dtype=float)
    if scenario.coordination.scheme == "local":
        spec = spec.model_copy(update={"controls": spec.controls.model_copy(update={"volt_var": True, "volt_watt": True})})
    # The feeder's own load level, kW-weighted over its loads: flexible loads' baseline shape.
    nominal = model._load_kw.sum()
    load_shape = model._load_kw @ model.load_levels / nominal if nominal > 0 else np.zeros(len(index))
    try:
        model.fleet = DerFleet(model.dss, model.alt, spec, scenario.time.step_seconds / 3600.0, local_hours, irradiance,
                               load_shape)
    except ValueError as exc:
        raise FeederModelError(f"feeder {spec.label}: {exc}") from None
    model.set_solver(spec.solver)
    if scenario.output.checkpoint_every is not None and model.fleet.inverter_controls:
        model.journal = []  # its checkpoints replay it (see FeederModel._replay)
    return model
