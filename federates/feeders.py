"""Feeder federate: a group of OpenDSS feeders in one process, one DSS context each.

Each step every feeder takes its boundary bus voltage as source voltage, applies
the step's load level, solves, and publishes its substation P and Q per phase and
total, and its lowest and highest node voltages. In iterative coupling it re-solves
whenever the transmission federate sends a new voltage within the step.
"""

from __future__ import annotations

import json
import sys
import time

import helics as h
import numpy as np
from pydantic import ValidationError

from federates import interfaces as names
from federates.base import (
    WARNING_PREFIX,
    FederationConfig,
    close_federate,
    create_value_federate,
    federate_main,
    metadata_json,
    publish_vector,
    register_publication,
    subscribe,
)
from federates.processes import kind_of
from grid.feeder import build_feeder
from grid.setpoints import Setpoints

# Imported late by the code it runs (PV and load-diversity profiles); the launcher imports
# them before forking this federate.
PRELOAD = ("timeseries.solar", "timeseries.diversity")


class FeederGroupFederate:
    def __init__(self, config: FederationConfig, group: int):
        self.config = config
        self.scenario = config.scenario
        self.group = group
        self.indices = config.feeder_groups[group]
        self.fed: h.HelicsFederate | None = None

    def setup(self) -> None:
        specs = [self.scenario.feeders[i] for i in self.indices]
        self.models = [build_feeder(spec, self.scenario) for spec in specs]
        self.labels = [f" at step {k} ({stamp})" for k, stamp in enumerate(self.scenario.time.index())]
        fed = self.fed = create_value_federate(names.feeder_group(self.group), self.config)
        pub = lambda declared, **parts: register_publication(fed, declared, **parts)  # noqa: E731
        buses = sorted({int(spec.bus) for spec in specs})
        self.sub_voltage = [subscribe(fed, names.BOUNDARY_VOLTAGE, bus=b) for b in buses]
        self.feeder_bus_pos = [buses.index(int(spec.bus)) for spec in specs]
        self.pub_power = [pub(names.FEEDER_POWER, feeder=m.name) for m in self.models]
        self.pub_voltages = [pub(names.FEEDER_VOLTAGES, feeder=m.name) for m in self.models]
        self.pub_ders = [pub(names.FEEDER_DERS, feeder=m.name) for m in self.models]
        # The coordinator compares the voltages its OPF predicted with these.
        self.record_nodes = self.scenario.output.node_voltages or self.scenario.coordination.coordinated
        self.pub_nodes = [pub(names.FEEDER_NODE_VOLTAGES, feeder=m.name) for m in self.models] if self.record_nodes else []
        self.pub_meta = [pub(names.FEEDER_METADATA, feeder=m.name) for m in self.models]
        self.pub_timing = pub(names.FEEDER_GROUP_TIMING, group=self.group)
        self.pub_checkpoint = pub(names.CHECKPOINT, federate=names.feeder_group(self.group))
        # Where each reading goes in the vectors, resolved once (the step writes numpy slices).
        power_groups = (("p_a", "p_b", "p_c"), ("p_total",), ("q_a", "q_b", "q_c"), ("q_total",), ("losses_kw", "losses_kvar"))
        names.FEEDER_POWER.check_written([f for group in power_groups for f in group])
        self.at_power = [names.FEEDER_POWER.positions(group) for group in power_groups]
        self.power_vector = np.empty(names.FEEDER_POWER.length())
        stats = ("vmin_pu", "vmin_node", "vmax_pu", "vmax_node", "nodes_outside_band", "vuf_head")  # FeederModel.voltage_stats's order
        names.FEEDER_VOLTAGES.check_written(stats)
        self.at_stats = names.FEEDER_VOLTAGES.positions(stats)
        self.stats_vector = np.empty(names.FEEDER_VOLTAGES.length())
        saved = self.config.saved_state(kind_of(names.feeder_group(self.group)).checkpoint_part)
        if saved is not None:
            for model in self.models:
                if model.name not in saved:
                    raise ValueError(f"the checkpoint holds no state of feeder {model.name}")
                # Printed lines also tell the launcher that a long replay is alive (not stalled).
                on_replay = lambda done, total, name=model.name: print(  # noqa: E731
                    f"feeder {name}: replayed solve {done} of {total} of its journal", flush=True)
                mismatch = model.restore(saved[model.name], on_replay)
                if mismatch > 1e-12:  # an element whose admittance could not be rebuilt, or a replay that went otherwise
                    print(f"feeder {model.name}: the restored circuit differs by up to {mismatch:.1e} (relative); "
                          "results after the resume may differ slightly from an uninterrupted run", file=sys.stderr, flush=True)
        self.sub_setpoints = []
        if self.scenario.coordination.scheme == "external" or self.scenario.coordination.coordinated:
            self.sub_setpoints = [subscribe(fed, names.SETPOINTS, feeder=m.name) for m in self.models]
        self.dss_seconds = 0.0
        self.checked_nodes = False  # for nodes at zero voltage, after the first solve
        h.helicsFederateEnterInitializingMode(fed)
        for pub, model in zip(self.pub_meta, self.models):
            fleet = model.fleet
            h.helicsPublicationPublishString(pub, metadata_json(
                node_names=model.node_names, master=str(model.master), head_bus=model.head_bus,
                batteries=[b.name for b in fleet.batteries], battery_kwh=[b.kwh_rated for b in fleet.batteries],
                battery_kw=[b.kw_rated for b in fleet.batteries], pv=[p.name for p in fleet.pv],
                pv_pmpp_kw=[p.pmpp_kw for p in fleet.pv], evs=[e.name for e in fleet.evs],
                regulators=fleet.regulators, capacitors=fleet.capacitors, devices=fleet.devices(),
            ))
        h.helicsFederateEnterExecutingMode(fed)

    def _apply_setpoints(self) -> None:
        """New set-points from the coordinator, if any arrived; they hold until replaced."""
        for model, sub in zip(self.models, self.sub_setpoints):
            if not h.helicsInputIsUpdated(sub):
                continue
            text = h.helicsInputGetString(sub)
            try:
                model.set_setpoints(Setpoints.from_json(text))
            except ValidationError as exc:  # one line: where and what, for the run's one-line error
                reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"feeder {model.name}: bad set-points from the coordinator ({reason}): {text[:120]}") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"feeder {model.name}: bad set-points from the coordinator ({exc}): {text[:120]}") from None

    def _solve_and_publish(self, k: int) -> None:
        self._apply_setpoints()
        voltages = [h.helicsInputGetComplex(s) for s in self.sub_voltage]
        for i, model in enumerate(self.models):
            started = time.perf_counter()  # the feeder's whole step: DERs, loads, solve, readings
            step = model.step(voltages[self.feeder_bus_pos[i]], k, self.labels[k])
            ders = names.pack_ders(step.ders)
            self.dss_seconds += time.perf_counter() - started
            p, q, power = step.p_kw, step.q_kvar, self.power_vector
            at_p, at_p_total, at_q, at_q_total, at_losses = self.at_power
            power[at_p], power[at_p_total], power[at_q], power[at_q_total], power[at_losses] = p, p.sum(), q, q.sum(), step.losses
            publish_vector(self.pub_power[i], power)
            self.stats_vector[self.at_stats] = step.stats
            publish_vector(self.pub_voltages[i], self.stats_vector)
            publish_vector(self.pub_ders[i], ders)
            if self.record_nodes:
                publish_vector(self.pub_nodes[i], step.node_vm_pu)
            if not self.checked_nodes:
                self._warn_dead_nodes(model, step.node_vm_pu)
        self.checked_nodes = True
        publish_vector(self.pub_timing, (self.dss_seconds,))
        if self.scenario.is_checkpoint_step(k):
            # Taken after every solve of the step: the last one (after the final iteration) counts.
            state = {model.name: model.state() for model in self.models}
            h.helicsPublicationPublishString(self.pub_checkpoint, json.dumps({"step": k, "state": state}))

    @staticmethod
    def _warn_dead_nodes(model, v: np.ndarray) -> None:
        """After the first solve: nodes at 0 pu would be recorded as such all run long without a word."""
        dead = model.dead_nodes(v)
        if dead:
            shown = ", ".join(dead[:5]) + (f" and {len(dead) - 5} more" if len(dead) > 5 else "")
            print(f"{WARNING_PREFIX}feeder {model.name}: {len(dead)} node(s) at 0 pu after the first solve, "
                  f"not connected to the source: {shown} (a load or line on a misspelt bus?)", file=sys.stderr, flush=True)

    def _end_step(self) -> None:
        for model in self.models:
            model.end_step()

    def run(self) -> None:
        n_steps = self.scenario.time.n_steps
        iterative = self.scenario.coupling.mode == "iterative"
        k = self.config.first_step
        h.helicsFederateRequestTime(self.fed, self.config.step_time(k))
        while k < n_steps:
            self._solve_and_publish(k)
            if iterative:
                # Granted the same step again if the transmission sent a new voltage, else the next one.
                _, state = h.helicsFederateRequestTimeIterative(
                    self.fed, self.config.step_time(k + 1), h.HELICS_ITERATION_REQUEST_ITERATE_IF_NEEDED
                )
                if state == h.HELICS_ITERATION_RESULT_NEXT_STEP:
                    self._end_step()
                    k += 1
            else:
                self._end_step()
                k += 1
                if k < n_steps:
                    h.helicsFederateRequestTime(self.fed, self.config.step_time(k))

    def finish(self, error: str = "", own_error: bool = False) -> None:
        close_federate(self.fed, error, own_error)


def main() -> None:
    """`python -m federates.feeders --config federation.json --group G`."""
    federate_main(FeederGroupFederate, "Tandem feeder federate (OpenDSS)")


if __name__ == "__main__":
    main()
