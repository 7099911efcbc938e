"""Recorder federate: writes every step of the run to one HDF5 file.

It reads step k half a step after the others exchanged it, when all iterations of
the step have settled, so it never holds up the co-simulation. Time requests are
asynchronous and polled so that SIGTERM from the launcher is handled at once: the
file is closed with what was written and the completion flag unset. The signal only
sets a flag that is acted on between writes, and once the file is being closed
further SIGTERMs are ignored: a Slurm `scancel` signals every process of a job, so the
recorder gets SIGTERM from Slurm and again from its stopping launcher, and HDF5 left
in the middle of a write keeps chunks that can no longer be read.
"""

from __future__ import annotations

import json
import signal
import sys
import time

import helics as h
import numpy as np

from federates import interfaces as names
from federates.base import FederationConfig, close_federate, create_value_federate, federate_main, read_vector
from results.store import ResultsWriter, Series


class StopRequested(Exception):
    """The launcher asked the recorder to stop (SIGTERM)."""


_stop_signals: list[str] = []  # the stopping signals received, acted on by check_stop()


def _note_stop(signum, frame) -> None:
    _stop_signals.append(signal.Signals(signum).name)


def check_stop() -> None:
    """Raise StopRequested once a stopping signal has arrived: at points between writes."""
    if _stop_signals:
        raise StopRequested(f"stopped by signal {_stop_signals[0]}")


class RecorderFederate:
    def __init__(self, config: FederationConfig):
        self.config = config
        self.scenario = config.scenario
        self.fed: h.HelicsFederate | None = None
        self.writer: ResultsWriter | None = None

    def setup(self) -> None:
        signal.signal(signal.SIGTERM, _note_stop)
        resume_rows = self.config.first_step if self.config.resume_state is not None else None
        self.writer = ResultsWriter(
            self.config.output, self.scenario.to_json(), self.config.scenario_source, self.scenario.time.n_steps,
            resume_rows=resume_rows,
        )
        fed = self.fed = create_value_federate(names.RECORDER, self.config)
        sub = lambda key: h.helicsFederateRegisterSubscription(fed, key, "")  # noqa: E731
        self.sub_meta = sub(names.TRANSMISSION_METADATA)
        self.sub_vm, self.sub_va = sub(names.TRANSMISSION_BUS_VM), sub(names.TRANSMISSION_BUS_VA)
        self.sub_loading = sub(names.TRANSMISSION_BRANCH_LOADING)
        self.sub_coupling = sub(names.COUPLING)
        self.sub_multipliers = sub(names.MULTIPLIERS)
        self.sub_timing = sub(names.TRANSMISSION_TIMING)
        self.sub_group_timing = [sub(names.feeder_group_timing(g)) for g in range(len(self.config.feeder_groups))]
        self._last_timing = np.zeros(2 + len(self.config.feeder_groups))
        self.sub_load = sub(names.BOUNDARY_LOAD)
        self.labels = [f.label for f in self.scenario.feeders]
        self.sub_power = [sub(names.feeder_power(f)) for f in self.labels]
        self.sub_voltages = [sub(names.feeder_voltages(f)) for f in self.labels]
        self.sub_ders = [sub(names.feeder_ders(f)) for f in self.labels]
        self.sub_feeder_meta = [sub(names.feeder_metadata(f)) for f in self.labels]
        self.sub_nodes = [sub(names.feeder_node_voltages(f)) for f in self.labels] if self.scenario.output.node_voltages else []
        self.sub_cost = sub(names.GENERATION_COST)
        self.coordinated = self.scenario.coordination.coordinated
        if self.coordinated:
            self.sub_coordinator_meta = sub(names.COORDINATOR_METADATA)
            self.sub_coordinator = sub(names.COORDINATOR_RECORD)
        self.sub_checkpoint = {names.TRANSMISSION: sub(names.checkpoint_state(names.TRANSMISSION))}
        for g in range(len(self.config.feeder_groups)):
            self.sub_checkpoint[names.feeder_group(g)] = sub(names.checkpoint_state(names.feeder_group(g)))
        if self.coordinated:
            self.sub_checkpoint[names.COORDINATOR] = sub(names.checkpoint_state(names.COORDINATOR))
        h.helicsFederateEnterExecutingMode(fed)

    def _request_time(self, t: float) -> None:
        h.helicsFederateRequestTimeAsync(self.fed, t)
        while not h.helicsFederateIsAsyncOperationCompleted(self.fed):
            check_stop()
            time.sleep(0.002)
        h.helicsFederateRequestTimeComplete(self.fed)

    def _declare_datasets(self) -> None:
        """Create the file layout once the other federates have told their names and sizes."""
        w, meta = self.writer, json.loads(h.helicsInputGetString(self.sub_meta))
        bus_names = meta["bus_names"]
        self.boundary_pos = np.array([bus_names.index(str(b)) for b in self.config.boundary_buses])
        n_b, n_f, n_bus, n_br = len(self.boundary_pos), len(self.labels), len(bus_names), len(meta["branch_names"])
        feeders = self.scenario.feeders
        w.add_static("boundary/bus", np.array(self.config.boundary_buses), "", ("boundary",), "pandapower index of each boundary bus")
        w.add_static("feeders/name", self.labels, "", ("feeder",), "feeder names")
        w.add_static("feeders/model", [f.model for f in feeders], "", ("feeder",), "bundled model name or master file")
        w.add_static("feeders/bus", np.array([int(f.bus) for f in feeders]), "", ("feeder",), "transmission bus of each feeder")
        w.add_static(
            "feeders/multiplier",
            np.array(h.helicsInputGetVector(self.sub_multipliers)),
            "",
            ("feeder",),
            "identical copies behind the bus (transmission load = multiplier x feeder power)",
        )
        self.device_counts = []
        for label, sub in zip(self.labels, self.sub_feeder_meta):
            feeder_meta = json.loads(h.helicsInputGetString(sub))
            w.add_static(f"feeders/nodes/{label}", feeder_meta["node_names"], "", ("node",), f"OpenDSS node names of feeder {label}")
            self._declare_devices(label, feeder_meta)
            if self.sub_nodes:
                w.add_series(Series(f"feeders/node_vm_pu/{label}", (len(feeder_meta["node_names"]),), "pu", ("node",),
                                    f"voltage of every node of feeder {label}, as feeders/nodes/{label}", "f4"))
        w.add_static("transmission/bus", bus_names, "", ("bus",), "pandapower bus indices")
        w.add_static("transmission/branch", meta["branch_names"], "", ("branch",), "lines then transformers")
        for series in (
            Series("boundary/vm_pu", (n_b,), "pu", ("boundary",), "voltage magnitude at each boundary bus"),
            Series("boundary/va_deg", (n_b,), "deg", ("boundary",), "voltage angle at each boundary bus"),
            Series("boundary/p_mw", (n_b,), "MW", ("boundary",), "transmission-side load standing for the feeders"),
            Series("boundary/q_mvar", (n_b,), "Mvar", ("boundary",), "transmission-side reactive load standing for the feeders"),
            Series("feeders/p_kw", (n_f, 3), "kW", ("feeder", "phase"), "substation active power of one feeder copy per phase"),
            Series("feeders/q_kvar", (n_f, 3), "kvar", ("feeder", "phase"), "substation reactive power of one feeder copy per phase"),
            Series("feeders/p_total_kw", (n_f,), "kW", ("feeder",), "substation active power of one feeder copy"),
            Series("feeders/q_total_kvar", (n_f,), "kvar", ("feeder",), "substation reactive power of one feeder copy"),
            Series("feeders/losses_kw", (n_f,), "kW", ("feeder",), "active power losses of one feeder copy"),
            Series("feeders/losses_kvar", (n_f,), "kvar", ("feeder",), "reactive power losses of one feeder copy"),
            Series("feeders/vmin_pu", (n_f,), "pu", ("feeder",), "lowest node voltage in the feeder"),
            Series("feeders/vmin_node", (n_f,), "", ("feeder",), "index into feeders/nodes/<name> of the lowest voltage", "i4"),
            Series("feeders/vmax_pu", (n_f,), "pu", ("feeder",), "highest node voltage in the feeder"),
            Series("feeders/vmax_node", (n_f,), "", ("feeder",), "index into feeders/nodes/<name> of the highest voltage", "i4"),
            Series("feeders/nodes_outside_band", (n_f,), "", ("feeder",), "nodes outside 0.95-1.05 pu", "i4"),
            Series("feeders/vuf_head", (n_f,), "pu", ("feeder",), "voltage unbalance factor V2/V1 at the feeder's head bus"),
            Series("feeders/pv_available_kw", (n_f,), "kW", ("feeder",), "PV power the irradiance offers (one feeder copy)"),
            Series("feeders/pv_kw", (n_f,), "kW", ("feeder",), "PV power delivered (available minus curtailment and inverter limits)"),
            Series("feeders/pv_kvar", (n_f,), "kvar", ("feeder",), "PV reactive power delivered"),
            Series("feeders/battery_kw", (n_f,), "kW", ("feeder",), "battery power into the grid (+ discharging)"),
            Series("feeders/battery_kvar", (n_f,), "kvar", ("feeder",), "battery reactive power into the grid"),
            Series("feeders/ev_kw", (n_f,), "kW", ("feeder",), "EV charging power"),
            Series("feeders/ev_owed_kwh", (n_f,), "kWh", ("feeder",), "energy the connected EVs still need at the step's end"),
            Series("transmission/vm_pu", (n_bus,), "pu", ("bus",), "transmission bus voltage magnitudes"),
            Series("transmission/va_deg", (n_bus,), "deg", ("bus",), "transmission bus voltage angles"),
            Series("transmission/loading_percent", (n_br,), "%", ("branch",), "branch loading (current over rating)"),
            Series("transmission/generation_cost_per_h", (), "1/h", (), "generation cost rate of the step's operating point (network's polynomial costs, currency per hour)"),
            Series("coupling/iterations", (), "", (), "transmission solves in the step (1 in loose coupling)", "i4"),
            Series("coupling/mismatch_pu", (), "pu", (), "largest boundary voltage change between the voltage the feeders used and the final one"),
            Series("coupling/converged", (), "", (), "mismatch within the coupling tolerance", "u1"),
            Series("timing/transmission_power_flow_s", (), "s", (), "wall time of the step's transmission power flows"),
            Series("timing/transmission_wait_s", (), "s", (), "wall time the transmission federate waited on HELICS in the step (feeder solves and exchange)"),
            Series("timing/feeders_opendss_s", (len(self.config.feeder_groups),), "s", ("feeder_process",), "wall time of the step's feeder work in each feeder process: DER and load updates, OpenDSS solves, readings"),
        ):
            w.add_series(series)
        if self.coordinated:
            self._declare_coordinator()

    def _declare_coordinator(self) -> None:
        """One row per step; steps without a solve hold NaN (status -1)."""
        w, meta = self.writer, json.loads(h.helicsInputGetString(self.sub_coordinator_meta))
        self.coordinator_layout = meta["layout"]
        terms, slacks = meta["terms"], meta["slacks"]
        w.add_static("coordinator/term", terms, "", ("term",), "objective terms of the coordinator's OPF")
        w.add_static("coordinator/slack", slacks, "", ("slack",), "soft limits of the OPF (unit in the name)")
        for key in ("scheme", "build_s", "n_variables", "n_constraints", "interval_steps", "periods"):
            w.file.attrs[f"coordinator_{key}"] = meta[key]
        scalar = lambda name, units, text, dtype="f8": Series(f"coordinator/{name}", (), units, (), text, dtype)  # noqa: E731
        for series in (
            scalar("status", "", "solve status after this step: 0 optimal, 1 time limit with a solution, 2 failed (set-points kept), -1 no solve", "i1"),
            scalar("objective", "", "objective of the solve over its horizon (currency)"),
            Series("coordinator/cost", (len(terms),), "", ("term",), "each objective term over the solve's horizon (currency), as coordinator/term"),
            scalar("solve_s", "s", "solver call: update push, HiGHS and status"),
            scalar("highs_s", "s", "time inside HiGHS"),
            scalar("update_s", "s", "writing the new forecasts and measurements into the model"),
            scalar("plan_s", "s", "whole plan: forecasts, update, solve, reading set-points"),
            scalar("n_variables", "", "variables of the OPF"),
            scalar("n_constraints", "", "constraints of the OPF"),
            Series("coordinator/slacks", (len(slacks),), "", ("slack",), "soft-limit use over the horizon, as coordinator/slack"),
            scalar("voltage_error_max_pu", "pu", "largest |OPF-predicted - OpenDSS-realised (mean over the interval)| feeder node voltage of the previous plan's first interval"),
            scalar("voltage_error_mean_pu", "pu", "mean of that error over modelled nodes and feeders"),
            scalar("exchange_iterations", "", "coordination rounds between TSO and DSOs in the solve (ADMM iterations; 1 for one-shot schemes)"),
            scalar("exchange_values", "", "numbers that crossed the TSO-DSO interface in the solve"),
            scalar("exchange_messages", "", "messages between TSO and DSOs in the solve"),
            Series("coordinator/planned_feeder_kw", (len(self.labels),), "kW", ("feeder",), "substation P of one feeder copy the plan schedules for its first interval"),
        ):
            w.add_series(series)

    def _declare_devices(self, label: str, meta: dict) -> None:
        """Per-device series of one feeder: battery SOC and dispatch, regulator taps, capacitor steps."""
        w = self.writer
        counts = {
            "battery_soc": len(meta["batteries"]),
            "battery_dispatch_kw": len(meta["batteries"]),
            "regulator_taps": len(meta["regulators"]),
            "capacitor_steps": len(meta["capacitors"]),
        }
        self.device_counts.append(counts)
        base = f"devices/{label}"
        if meta["batteries"]:
            w.add_static(f"{base}/battery", meta["batteries"], "", ("battery",), "battery names")
            w.add_static(f"{base}/battery_kwh", np.array(meta["battery_kwh"]), "kWh", ("battery",), "energy rating")
            w.add_static(f"{base}/battery_kw_rated", np.array(meta["battery_kw"]), "kW", ("battery",), "power rating")
            w.add_series(Series(f"{base}/battery_soc", (counts["battery_soc"],), "pu", ("battery",), "state of charge at the step's end"))
            w.add_series(Series(f"{base}/battery_dispatch_kw", (counts["battery_soc"],), "kW", ("battery",), "dispatched power (+ discharging)"))
        if meta["pv"]:
            w.add_static(f"{base}/pv", meta["pv"], "", ("pv",), "PV system names")
            w.add_static(f"{base}/pv_pmpp_kw", np.array(meta["pv_pmpp_kw"]), "kW", ("pv",), "PV rating at 1 kW/m2")
        if meta["regulators"]:
            w.add_static(f"{base}/regulator", meta["regulators"], "", ("regulator",), "regulator controls")
            w.add_series(Series(f"{base}/regulator_taps", (counts["regulator_taps"],), "", ("regulator",), "tap position", "i2"))
        if meta["capacitors"]:
            w.add_static(f"{base}/capacitor", meta["capacitors"], "", ("capacitor",), "capacitor banks")
            w.add_series(Series(f"{base}/capacitor_steps", (counts["capacitor_steps"],), "", ("capacitor",), "energised steps", "i2"))

    def _row(self, k: int) -> dict[str, np.ndarray]:
        # Every step brings new values from the transmission and every feeder. None means one of
        # them has left: the federation is stopping because of it, and this is no error of ours.
        sources = (("transmission", self.sub_coupling), *zip(self.labels, self.sub_power))
        stale = [name for name, sub in sources if not h.helicsInputIsUpdated(sub)]
        if stale:
            raise h.HelicsException(f"no values from {stale[0]} for step {k}: a federate has left")
        vec = read_vector
        vm, va = vec(self.sub_vm), vec(self.sub_va)
        load = vec(self.sub_load).reshape(2, -1)
        power = np.array([vec(s) for s in self.sub_power])
        p, q, losses = power[:, :4], power[:, 4:8], power[:, 8:10]
        voltages = np.array([vec(s) for s in self.sub_voltages])
        ders = [names.unpack_ders(vec(s), counts) for s, counts in zip(self.sub_ders, self.device_counts)]
        iterations, mismatch, converged = vec(self.sub_coupling)
        timing = np.concatenate([vec(self.sub_timing), [vec(s)[0] for s in self.sub_group_timing]])
        step_timing, self._last_timing = timing - self._last_timing, timing
        row = {
            "boundary/vm_pu": vm[self.boundary_pos],
            "boundary/va_deg": va[self.boundary_pos],
            "boundary/p_mw": load[0],
            "boundary/q_mvar": load[1],
            "feeders/p_kw": p[:, :3],
            "feeders/q_kvar": q[:, :3],
            "feeders/p_total_kw": p[:, 3],
            "feeders/q_total_kvar": q[:, 3],
            "feeders/losses_kw": losses[:, 0],
            "feeders/losses_kvar": losses[:, 1],
            **{f"feeders/node_vm_pu/{label}": vec(s) for label, s in zip(self.labels, self.sub_nodes)},
            "feeders/vmin_pu": voltages[:, 0],
            "feeders/vmin_node": voltages[:, 1],
            "feeders/vmax_pu": voltages[:, 2],
            "feeders/vmax_node": voltages[:, 3],
            "feeders/nodes_outside_band": voltages[:, 4],
            "feeders/vuf_head": voltages[:, 5],
            **{f"feeders/{key}": np.array([d[key] for d in ders]) for key in names.DER_TOTALS},
            **{
                f"devices/{label}/{key}": d[key]
                for label, d, counts in zip(self.labels, ders, self.device_counts)
                for key in names.DER_DEVICES
                if counts[key]
            },
            "transmission/vm_pu": vm,
            "transmission/va_deg": va,
            "transmission/loading_percent": vec(self.sub_loading),
            "coupling/iterations": iterations,
            "coupling/mismatch_pu": mismatch,
            "coupling/converged": converged,
            "timing/transmission_power_flow_s": step_timing[0],
            "timing/transmission_wait_s": step_timing[1],
            "timing/feeders_opendss_s": step_timing[2:],
            "transmission/generation_cost_per_h": vec(self.sub_cost)[0],
        }
        if self.coordinated:
            row.update(self._coordinator_row())
        return row

    def _coordinator_row(self) -> dict[str, np.ndarray | float]:
        layout = self.coordinator_layout
        if h.helicsInputIsUpdated(self.sub_coordinator):
            values = dict(zip(layout, h.helicsInputGetVector(self.sub_coordinator)))
        else:
            values = dict.fromkeys(layout, np.nan)
            values["status"] = -1
        group = lambda prefix: np.array([v for k, v in values.items() if k.startswith(prefix)])  # noqa: E731
        row = {f"coordinator/{k}": v for k, v in values.items() if "/" not in k}
        row["coordinator/cost"] = group("cost/")
        row["coordinator/slacks"] = group("slack/")
        row["coordinator/planned_feeder_kw"] = group("planned_kw/")
        return row

    def run(self) -> None:
        n_steps = self.scenario.time.n_steps
        dt = self.scenario.time.step_seconds
        for k in range(self.config.first_step, n_steps):
            check_stop()
            self._request_time(self.config.step_time(k) + dt / 2)
            if k == self.config.first_step:
                self._declare_datasets()
            self.writer.append(k * dt, self._row(k))
            if self.scenario.is_checkpoint_step(k):
                self._checkpoint(k)
            print(f"progress {k + 1} {n_steps}", flush=True)

    def _checkpoint(self, k: int) -> None:
        """Write the rows up to step k and every federate's state after it, together."""
        states: dict[str, dict] = {}
        for federate, sub in self.sub_checkpoint.items():
            message = json.loads(h.helicsInputGetString(sub)) if h.helicsInputIsUpdated(sub) else {}
            if message.get("step") != k:
                raise RuntimeError(f"no checkpoint state from federate '{federate}' after step {k}")
            if federate not in (names.TRANSMISSION, names.COORDINATOR):  # one part for all feeder groups
                states.setdefault("feeders", {}).update(message["state"])
            else:
                states[federate] = message["state"]
        self.writer.checkpoint(k, {part: json.dumps(state) for part, state in states.items()})
        print(f"checkpoint after step {k} written", file=sys.stderr, flush=True)

    def finish(self, error: str = "", own_error: bool = False) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the file is closed whole (the launcher SIGKILLs if it hangs)
        if self.writer is not None:
            complete = not error and self.writer.rows_received == self.scenario.time.n_steps
            self.writer.finish(complete=complete, error=error)
        close_federate(self.fed, error, own_error)


def main() -> None:
    """`python -m federates.recorder --config federation.json`."""
    federate_main(RecorderFederate, "Tandem recorder federate (HDF5)")


if __name__ == "__main__":
    main()
