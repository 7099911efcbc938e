"""Feeder federate: a group of OpenDSS feeders in one process, one DSS context each.

Each step every feeder takes its boundary bus voltage as source voltage, applies
the step's load level, solves, and publishes its substation P and Q per phase and
total, and its lowest and highest node voltages. In iterative coupling it re-solves
whenever the transmission federate sends a new voltage within the step.
"""

from __future__ import annotations

import time

import helics as h

from federates import interfaces as names
from federates.base import (
    FederationConfig,
    close_federate,
    create_value_federate,
    federate_main,
    metadata_json,
    publish_vector,
)
from tandem.grid.feeder import FeederModel
from tandem.grid.sequential import feeder_levels


class FeederGroupFederate:
    def __init__(self, config: FederationConfig, group: int):
        self.config = config
        self.scenario = config.scenario
        self.group = group
        self.indices = config.feeder_groups[group]
        self.fed: h.HelicsFederate | None = None

    def setup(self) -> None:
        specs = [self.scenario.feeders[i] for i in self.indices]
        self.models = [FeederModel(spec.label, spec.model) for spec in specs]
        self.levels = feeder_levels(self.scenario)[self.indices]
        self.labels = [f" at step {k} ({stamp})" for k, stamp in enumerate(self.scenario.time.index())]
        fed = self.fed = create_value_federate(names.feeder_group(self.group), self.config)
        vec = h.HELICS_DATA_TYPE_VECTOR
        buses = sorted({int(spec.bus) for spec in specs})
        self.sub_voltage = [h.helicsFederateRegisterSubscription(fed, names.boundary_voltage(b), "pu") for b in buses]
        self.feeder_bus_pos = [buses.index(int(spec.bus)) for spec in specs]
        self.pub_power = [h.helicsFederateRegisterGlobalPublication(fed, names.feeder_power(m.name), vec, "kW,kvar") for m in self.models]
        self.pub_extremes = [
            h.helicsFederateRegisterGlobalPublication(fed, names.feeder_voltage_extremes(m.name), vec, "pu")
            for m in self.models
        ]
        self.pub_meta = [
            h.helicsFederateRegisterGlobalPublication(fed, names.feeder_metadata(m.name), h.HELICS_DATA_TYPE_STRING, "")
            for m in self.models
        ]
        self.pub_timing = h.helicsFederateRegisterGlobalPublication(fed, names.feeder_group_timing(self.group), vec, "s")
        self.dss_seconds = 0.0
        h.helicsFederateEnterInitializingMode(fed)
        for pub, model in zip(self.pub_meta, self.models):
            h.helicsPublicationPublishString(pub, metadata_json(node_names=model.node_names, master=str(model.master)))
        h.helicsFederateEnterExecutingMode(fed)

    def _solve_and_publish(self, k: int) -> None:
        voltages = [h.helicsInputGetComplex(s) for s in self.sub_voltage]
        for i, model in enumerate(self.models):
            solving = time.perf_counter()
            model.run(voltages[self.feeder_bus_pos[i]], self.levels[i, k], self.labels[k])
            self.dss_seconds += time.perf_counter() - solving
            p, q = model.substation_power()
            publish_vector(self.pub_power[i], (*p, p.sum(), *q, q.sum()))
            publish_vector(self.pub_extremes[i], model.voltage_extremes())
        publish_vector(self.pub_timing, (self.dss_seconds,))

    def run(self) -> None:
        n_steps = self.scenario.time.n_steps
        iterative = self.scenario.coupling.mode == "iterative"
        k = 0
        h.helicsFederateRequestTime(self.fed, self.config.step_time(0))
        while k < n_steps:
            self._solve_and_publish(k)
            if iterative:
                # Granted the same step again if the transmission sent a new voltage, else the next one.
                _, state = h.helicsFederateRequestTimeIterative(
                    self.fed, self.config.step_time(k + 1), h.HELICS_ITERATION_REQUEST_ITERATE_IF_NEEDED
                )
                if state == h.HELICS_ITERATION_RESULT_NEXT_STEP:
                    k += 1
            else:
                k += 1
                if k < n_steps:
                    h.helicsFederateRequestTime(self.fed, self.config.step_time(k))

    def finish(self, error: str = "", own_error: bool = False) -> None:
        close_federate(self.fed, error, own_error)


if __name__ == "__main__":
    federate_main(FeederGroupFederate, "Tandem feeder federate (OpenDSS)")
