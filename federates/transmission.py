"""Transmission federate: pandapower AC power flow with the feeders as boundary loads.

Each step it waits for the feeders' substation powers of that step, solves, and
publishes the boundary voltages. In iterative coupling it repeats within the step
(HELICS iterative time requests) until the boundary voltages move less than the
tolerance or the iteration cap is reached; the count and final mismatch are
published for the record.
"""

from __future__ import annotations

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
)
from tandem.grid.transmission import TransmissionModel, voltage_mismatch


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
        self.pub_voltage = [h.helicsFederateRegisterGlobalPublication(fed, names.boundary_voltage(b), vec, "pu,deg") for b in buses]
        self.pub_load = [h.helicsFederateRegisterGlobalPublication(fed, names.boundary_load(b), vec, "MW,Mvar") for b in buses]
        self.pub_vm = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_BUS_VM, vec, "pu")
        self.pub_va = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_BUS_VA, vec, "deg")
        self.pub_loading = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_BRANCH_LOADING, vec, "%")
        self.pub_coupling = h.helicsFederateRegisterGlobalPublication(fed, names.COUPLING, vec, "")
        self.pub_multipliers = h.helicsFederateRegisterGlobalPublication(fed, names.MULTIPLIERS, vec, "")
        self.pub_meta = h.helicsFederateRegisterGlobalPublication(fed, names.TRANSMISSION_METADATA, h.HELICS_DATA_TYPE_STRING, "")
        labels = [f.label for f in self.scenario.feeders]
        self.sub_p = [h.helicsFederateRegisterSubscription(fed, names.feeder_p(f), "kW") for f in labels]
        self.sub_q = [h.helicsFederateRegisterSubscription(fed, names.feeder_q(f), "kvar") for f in labels]

        h.helicsFederateEnterInitializingMode(fed)
        h.helicsPublicationPublishString(
            self.pub_meta,
            metadata_json(bus_names=self.model.bus_names, branch_names=self.model.branch_names, boundary_buses=buses.tolist()),
        )
        self.sent_vm, self.sent_va = self.model.initial_voltage
        self._publish_boundary_voltage(self.sent_vm, self.sent_va)
        h.helicsFederateEnterExecutingMode(fed)

    def _publish_boundary_voltage(self, vm: np.ndarray, va: np.ndarray) -> None:
        for pub, m, a in zip(self.pub_voltage, vm, va):
            publish_vector(pub, (m, a))

    def _feeder_totals(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Total P and Q of every feeder, all of which must have reported since the last read."""
        stale = [i for i, s in enumerate(self.sub_p) if not h.helicsInputIsUpdated(s)]
        if stale:
            feeder = self.scenario.feeders[stale[0]].label
            raise RuntimeError(f"no new power from feeder {feeder}{label}: the federation lost step")
        p = np.array([h.helicsInputGetVector(s)[3] for s in self.sub_p])
        q = np.array([h.helicsInputGetVector(s)[3] for s in self.sub_q])
        return p, q

    def run(self) -> None:
        coupling = self.scenario.coupling
        iterative = coupling.mode == "iterative"
        start = self.scenario.time.index()
        for k in range(self.scenario.time.n_steps):
            t = self.config.step_time(k)
            h.helicsFederateRequestTime(self.fed, t)
            label = f" at step {k} ({start[k]})"
            for n in range(1, coupling.max_iterations + 1):
                p, q = self._feeder_totals(label)
                self.model.run(k, p, q, label)
                vm, va = self.model.boundary_voltage()
                mismatch = voltage_mismatch(vm, va, self.sent_vm, self.sent_va)
                converged = mismatch <= coupling.tolerance_pu
                if not iterative or converged or n == coupling.max_iterations:
                    break
                self._publish_boundary_voltage(vm, va)
                self.sent_vm, self.sent_va = vm, va
                _, state = h.helicsFederateRequestTimeIterative(self.fed, t, h.HELICS_ITERATION_REQUEST_ITERATE_IF_NEEDED)
                if state != h.HELICS_ITERATION_RESULT_ITERATING:
                    raise RuntimeError(f"feeders did not answer iteration {n + 1}{label}")
            if not iterative:
                # Loose coupling: the feeders see this voltage at the next step (one-step lag).
                self._publish_boundary_voltage(vm, va)
                self.sent_vm, self.sent_va = vm, va
            self._publish_record(k, n, mismatch, converged)

    def _publish_record(self, k: int, iterations: int, mismatch: float, converged: bool) -> None:
        p_mw, q_mvar = self.model.boundary_load()
        for pub, p, q in zip(self.pub_load, p_mw, q_mvar):
            publish_vector(pub, (p, q))
        vm, va = self.model.bus_voltages()
        publish_vector(self.pub_vm, vm)
        publish_vector(self.pub_va, va)
        publish_vector(self.pub_loading, self.model.branch_loading())
        publish_vector(self.pub_coupling, (iterations, mismatch, 1.0 if converged else 0.0))
        if k == 0:
            publish_vector(self.pub_multipliers, self.model.multipliers)

    def finish(self, error: str = "", own_error: bool = False) -> None:
        if own_error and self.fed is not None:
            h.helicsFederateGlobalError(self.fed, 1, f"transmission: {error}")
        close_federate(self.fed)


if __name__ == "__main__":
    federate_main(TransmissionFederate, "Tandem transmission federate (pandapower)")
