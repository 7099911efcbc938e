"""Transmission federate: pandapower AC power flow with the feeders as boundary loads.

Each step it waits for the feeders' substation powers of that step, solves, and
publishes the boundary voltages. In iterative coupling it repeats within the step
(HELICS iterative time requests) until the boundary voltages move less than the
tolerance or the iteration cap is reached; the count and final mismatch are
published for the record.
"""

from __future__ import annotations

import json
import sys
import time

import helics as h
import numpy as np

from federates import interfaces as names
from federates.base import (
    WARNING_PREFIX,
    FederationConfig,
    close_federate,
    create_value_federate,
    federate_main,
    metadata_json,
    publish_vector,
    read_vector,
    register_publication,
    subscribe,
)
from federates.processes import kind_of
from grid.transmission import TransmissionModel, complex_voltage, voltage_mismatch

# Imported late by the code it runs; the launcher imports them before forking this federate.
PRELOAD = ("pandapower", "pandapower.networks", "lightsim2grid.newtonpf")


class TransmissionFederate:
    def __init__(self, config: FederationConfig):
        self.config = config
        self.scenario = config.scenario
        self.fed: h.HelicsFederate | None = None

    def setup(self) -> None:
        self.model = TransmissionModel(self.scenario)
        fed = self.fed = create_value_federate(names.TRANSMISSION, self.config, wait_for_current_time=True)
        pub = lambda declared, **parts: register_publication(fed, declared, **parts)  # noqa: E731
        buses = self.model.boundary_buses
        self.pub_voltage = [pub(names.BOUNDARY_VOLTAGE, bus=b) for b in buses]
        self.pub_load = pub(names.BOUNDARY_LOAD)
        self.pub_vm = pub(names.TRANSMISSION_BUS_VM)
        self.pub_va = pub(names.TRANSMISSION_BUS_VA)
        self.pub_loading = pub(names.TRANSMISSION_BRANCH_LOADING)
        self.pub_coupling = pub(names.COUPLING)
        self.pub_timing = pub(names.TRANSMISSION_TIMING)
        self.pf_seconds = self.wait_seconds = 0.0
        self.pub_multipliers = pub(names.MULTIPLIERS)
        self.pub_meta = pub(names.TRANSMISSION_METADATA)
        self.pub_cost = pub(names.GENERATION_COST)
        self.pub_checkpoint = pub(names.CHECKPOINT, federate=names.TRANSMISSION)
        coordination = self.scenario.coordination
        self.sub_dispatch = (
            subscribe(fed, names.GENERATOR_DISPATCH)
            if coordination.coordinated and coordination.dispatch_generators else None
        )
        labels = [f.label for f in self.scenario.feeders]
        self.sub_power = [subscribe(fed, names.FEEDER_POWER, feeder=f) for f in labels]
        # Positions resolved once: the step reads plain numpy indices.
        self.at_p_total, self.at_q_total = (names.FEEDER_POWER.positions([f]) for f in ("p_total", "q_total"))
        n_buses = len(buses)
        names.BOUNDARY_LOAD.check_written(["p_mw", "q_mvar"])
        names.COUPLING.check_written(["iterations", "mismatch_pu", "converged"])
        names.TRANSMISSION_TIMING.check_written(["power_flow_s", "wait_s"])
        self.record_layout = {
            "load": names.BOUNDARY_LOAD.layout({"boundary": n_buses}),
            "coupling": names.COUPLING.layout(),
            "timing": names.TRANSMISSION_TIMING.layout(),
        }
        self.load_vector = np.empty(names.BOUNDARY_LOAD.length({"boundary": n_buses}))
        self.coupling_vector = np.empty(names.COUPLING.length())
        self.timing_vector = np.empty(names.TRANSMISSION_TIMING.length())

        h.helicsFederateEnterInitializingMode(fed)
        h.helicsPublicationPublishString(
            self.pub_meta,
            metadata_json(bus_names=self.model.bus_names, branch_names=self.model.branch_names, boundary_buses=buses.tolist()),
        )
        self.sent_vm, self.sent_va = self.model.initial_voltage
        saved = self.config.saved_state(kind_of(names.TRANSMISSION).checkpoint_part)
        if saved is not None:  # resumed: the voltage the feeders saw last is what they see next
            self.model.restore(saved["model"])
            self.sent_vm, self.sent_va = (np.asarray(v, dtype=float) for v in saved["sent_voltage"])
        self._publish_boundary_voltage(self.sent_vm, self.sent_va)
        h.helicsFederateEnterExecutingMode(fed)

    def _publish_boundary_voltage(self, vm: np.ndarray, va: np.ndarray) -> None:
        for pub, v in zip(self.pub_voltage, complex_voltage(vm, va)):
            h.helicsPublicationPublishComplex(pub, complex(v))

    def _feeder_totals(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Total P and Q of every feeder, all of which must have reported since the last read."""
        stale = [i for i, s in enumerate(self.sub_power) if not h.helicsInputIsUpdated(s)]
        if stale:
            feeder = self.scenario.feeders[stale[0]].label
            raise RuntimeError(f"no new power from feeder {feeder}{label}: the federation lost step")
        power = np.array([read_vector(s) for s in self.sub_power])
        return power[:, self.at_p_total], power[:, self.at_q_total]

    def run(self) -> None:
        coupling = self.scenario.coupling
        iterative = coupling.mode == "iterative"
        start = self.scenario.time.index()
        for k in range(self.config.first_step, self.scenario.time.n_steps):
            t = self.config.step_time(k)
            waited = time.perf_counter()
            h.helicsFederateRequestTime(self.fed, t)
            self.wait_seconds += time.perf_counter() - waited
            label = f" at step {k} ({start[k]})"
            if self.sub_dispatch is not None and h.helicsInputIsUpdated(self.sub_dispatch):
                self.model.set_dispatch(np.asarray(h.helicsInputGetVector(self.sub_dispatch)))
            for n in range(1, coupling.max_iterations + 1):
                p, q = self._feeder_totals(label)
                solving = time.perf_counter()
                self.model.run(k, p, q, label)
                for warning in self.model.match_warnings:  # once: after the multipliers are fixed
                    print(f"{WARNING_PREFIX}{warning}", file=sys.stderr, flush=True)
                self.model.match_warnings.clear()
                vm, va = self.model.boundary_voltage()
                self.pf_seconds += time.perf_counter() - solving
                mismatch = voltage_mismatch(vm, va, self.sent_vm, self.sent_va)
                converged = mismatch <= coupling.tolerance_pu
                if not iterative or converged or n == coupling.max_iterations:
                    break
                self._publish_boundary_voltage(vm, va)
                self.sent_vm, self.sent_va = vm, va
                waited = time.perf_counter()
                _, state = h.helicsFederateRequestTimeIterative(self.fed, t, h.HELICS_ITERATION_REQUEST_ITERATE_IF_NEEDED)
                self.wait_seconds += time.perf_counter() - waited
                if state != h.HELICS_ITERATION_RESULT_ITERATING:
                    raise RuntimeError(f"feeders did not answer iteration {n + 1}{label}")
            if not iterative:
                # Loose coupling: the feeders see this voltage at the next step (one-step lag).
                self._publish_boundary_voltage(vm, va)
                self.sent_vm, self.sent_va = vm, va
            self._publish_record(k, n, mismatch, converged)

    def _publish_record(self, k: int, iterations: int, mismatch: float, converged: bool) -> None:
        load, coupling, timing = self.record_layout["load"], self.record_layout["coupling"], self.record_layout["timing"]
        self.load_vector[load["p_mw"]], self.load_vector[load["q_mvar"]] = self.model.boundary_load()
        publish_vector(self.pub_load, self.load_vector)
        vm, va = self.model.bus_voltages()
        publish_vector(self.pub_vm, vm)
        publish_vector(self.pub_va, va)
        publish_vector(self.pub_loading, self.model.branch_loading())
        self.coupling_vector[coupling["iterations"]] = iterations
        self.coupling_vector[coupling["mismatch_pu"]] = mismatch
        self.coupling_vector[coupling["converged"]] = 1.0 if converged else 0.0
        publish_vector(self.pub_coupling, self.coupling_vector)
        self.timing_vector[timing["power_flow_s"]], self.timing_vector[timing["wait_s"]] = self.pf_seconds, self.wait_seconds
        publish_vector(self.pub_timing, self.timing_vector)
        publish_vector(self.pub_cost, (self.model.generation_cost(),))
        if k == self.config.first_step:  # also after a resume: the coordinator rebuilds its model with them
            publish_vector(self.pub_multipliers, self.model.multipliers)
        if self.scenario.is_checkpoint_step(k):
            state = {"model": self.model.state(), "sent_voltage": [self.sent_vm.tolist(), self.sent_va.tolist()]}
            h.helicsPublicationPublishString(self.pub_checkpoint, json.dumps({"step": k, "state": state}))

    def finish(self, error: str = "", own_error: bool = False) -> None:
        close_federate(self.fed, error, own_error)


def main() -> None:
    """`python -m federates.transmission --config federation.json`."""
    federate_main(TransmissionFederate, "Tandem transmission federate (pandapower)")


if __name__ == "__main__":
    main()
