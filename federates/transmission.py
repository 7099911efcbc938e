"""Transmission federate: pandapower AC power flow with the feeders as boundary loads.

Each step it waits for the feeders' substation powers of that step, solves, and
publishes the boundary voltages. In iterative coupling it repeats within the step
(HELICS iterative time requests) until the boundary voltages move less than the
tolerance or the iteration cap is reached; the count and final mismatch are
published for the record.
"""

from __future__ import annotations

import json
import time

import helics as h
import numpy as np

from federates import interfaces as names
from federates.base import (
    FederationConfig,
    close_federate,
    create_value_federate,
    federate_main,
    metadata_json,
    publish_vector,
    read_vector,
)
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
        vec = h.HELICS_DATA_TYPE_VECTOR
        buses = self.model.boundary_buses
        self.pub_voltage = [
            h.helicsFederateRegisterGlobalPublication(fed, names.boundary_voltage(b), h.HELICS_DATA_TYPE_COMPLEX, "pu") for b in buses
        ]
        self.pub_load = h.helicsFederateRegisterGlobalPublication(fed, names.BOUNDARY_LOAD, vec, "MW,Mvar")
        self.pub_vm = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_BUS_VM, vec, "pu")
        self.pub_va = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_BUS_VA, vec, "deg")
        self.pub_loading = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_BRANCH_LOADING, vec, "%")
        self.pub_coupling = h.helicsFederateRegisterGlobalPublication(fed, names.COUPLING, vec, "")
        self.pub_timing = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_TIMING, vec, "s")
        self.pf_seconds = self.wait_seconds = 0.0
        self.pub_multipliers = h.helicsFederateRegisterGlobalPublication(fed, names.MULTIPLIERS, vec, "")
        self.pub_meta = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_METADATA, h.HELICS_DATA_TYPE_STRING, "")
        self.pub_cost = h.helicsFederateRegisterGlobalPublication(fed, names.GENERATION_COST, vec, "1/h")
        self.pub_checkpoint = h.helicsFederateRegisterGlobalPublication(
            fed, names.checkpoint_state(names.TRANSMISSION), h.HELICS_DATA_TYPE_STRING, ""
        )
        coordination = self.scenario.coordination
        self.sub_dispatch = (
            h.helicsFederateRegisterSubscription(fed, names.GENERATOR_DISPATCH, "MW")
            if coordination.coordinated and coordination.dispatch_generators else None
        )
        labels = [f.label for f in self.scenario.feeders]
        self.sub_power = [h.helicsFederateRegisterSubscription(fed, names.feeder_power(f), "kW,kvar") for f in labels]

        h.helicsFederateEnterInitializingMode(fed)
        h.helicsPublicationPublishString(
            self.pub_meta,
            metadata_json(bus_names=self.model.bus_names, branch_names=self.model.branch_names, boundary_buses=buses.tolist()),
        )
        self.sent_vm, self.sent_va = self.model.initial_voltage
        saved = self.config.saved_state(names.TRANSMISSION)
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
        return power[:, 3], power[:, 7]

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
        publish_vector(self.pub_load, np.concatenate(self.model.boundary_load()))
        vm, va = self.model.bus_voltages()
        publish_vector(self.pub_vm, vm)
        publish_vector(self.pub_va, va)
        publish_vector(self.pub_loading, self.model.branch_loading())
        publish_vector(self.pub_coupling, (iterations, mismatch, 1.0 if converged else 0.0))
        publish_vector(self.pub_timing, (self.pf_seconds, self.wait_seconds))
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
