"""Coordinator federate: receding-horizon look-ahead OPF over transmission and feeders.

After every step it reads the feeders' node voltages (to compare with what its last plan
predicted); every K steps it also reads the measured state (battery SOC, regulator taps,
boundary voltages, the feeder multipliers), solves the scheme's look-ahead problem over
H intervals, and publishes the first interval's DER set-points to the feeders and the
generator dispatch to the transmission federate. It runs a quarter step after each
step's exchange, so what it sends applies from the next step, and the recorder (half a
step after) records each solve in the row of the step after which it ran.

A solve that fails or runs out of time without a solution sends nothing: the federates
keep the last set-points, and the record says so.
"""

from __future__ import annotations

import json
import sys
import time

import helics as h
import numpy as np

from coordination.receding_horizon import SLACKS, STATUS_CODES, Measurements, RecedingHorizon, voltage_error
from federates import interfaces as names
from federates.base import (
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
from grid.setpoints import Setpoints

# Imported late by the code it runs (network and feeder models, profiles); the launcher
# imports them before forking this federate.
PRELOAD = ("pandapower", "pandapower.networks", "lightsim2grid.newtonpf", "opendssdirect", "altdss",
           "timeseries.solar", "timeseries.diversity")


FAILED = 2  # status code of a solve without a usable solution


def record_layout(terms: list[str], feeders: list[str]) -> list[str]:
    """Names of the entries of one COORDINATOR_RECORD vector, in order."""
    return [
        "status", "objective", *(f"cost/{t}" for t in terms), "solve_s", "highs_s", "update_s", "plan_s",
        "n_variables", "n_constraints", *(f"slack/{s}" for s in SLACKS), "voltage_error_max_pu", "voltage_error_mean_pu",
        *(f"planned_kw/{f}" for f in feeders), "exchange_iterations", "exchange_values", "exchange_messages",
    ]


class CoordinatorFederate:
    def __init__(self, config: FederationConfig):
        self.config = config
        self.scenario = config.scenario
        self.fed: h.HelicsFederate | None = None

    def setup(self) -> None:
        scenario = self.scenario
        fed = self.fed = create_value_federate(names.COORDINATOR, self.config)
        sub = lambda declared, **parts: subscribe(fed, declared, **parts)  # noqa: E731
        pub = lambda declared, **parts: register_publication(fed, declared, **parts)  # noqa: E731
        self.labels = [f.label for f in scenario.feeders]
        self.feeder_bus = [int(f.bus) for f in scenario.feeders]
        self.sub_voltage = {b: sub(names.BOUNDARY_VOLTAGE, bus=b) for b in sorted(set(self.feeder_bus))}
        self.sub_ders = [sub(names.FEEDER_DERS, feeder=f) for f in self.labels]
        self.sub_nodes = [sub(names.FEEDER_NODE_VOLTAGES, feeder=f) for f in self.labels]
        self.sub_multipliers = sub(names.MULTIPLIERS)
        self.pub_setpoints = [pub(names.SETPOINTS, feeder=f) for f in self.labels]
        self.pub_dispatch = pub(names.GENERATOR_DISPATCH)
        self.pub_record = pub(names.COORDINATOR_RECORD)
        self.pub_meta = pub(names.COORDINATOR_METADATA)
        self.pub_checkpoint = pub(names.CHECKPOINT, federate=names.COORDINATOR)

        # Connected first, then the model: the broker sees this federate at once, and the
        # others wait for the build in initialization instead of timing out on a connection.
        started = time.perf_counter()
        self.horizon = RecedingHorizon(scenario)
        self.build_s = time.perf_counter() - started
        self.layout = record_layout(self.horizon.term_names, self.labels)
        h.helicsFederateEnterInitializingMode(fed)
        h.helicsPublicationPublishString(self.pub_meta, metadata_json(
            scheme=scenario.coordination.scheme, terms=self.horizon.term_names, slacks=list(SLACKS),
            layout=self.layout, build_s=self.build_s, n_variables=self.horizon.problem.n_variables,
            n_constraints=self.horizon.problem.n_constraints, interval_steps=self.horizon.K, periods=self.horizon.H,
        ))
        # Between plans: the last plan's first-period voltages (None: no usable plan yet), the
        # feeders' voltages since, and what was sent after the step just done.
        self.predicted: dict[str, list] | None = None
        self.realised: dict[str, list] = {label: [] for label in self.labels}
        self.sent: dict = {}
        saved = self.config.saved_state(kind_of(names.COORDINATOR).checkpoint_part)
        if saved is not None:
            self._restore(saved)
        h.helicsFederateEnterExecutingMode(fed)
        # The feeders' device lists, as the coordinator's own copies of the feeders have them.
        self.device_counts = [names.der_counts(m.fleet.devices()) for m in self.horizon.models.values()]

    def _measure(self) -> Measurements:
        soc, taps, head = {}, {}, {}
        for label, bus, s, counts in zip(self.labels, self.feeder_bus, self.sub_ders, self.device_counts):
            ders = names.unpack_ders(np.asarray(h.helicsInputGetVector(s)), counts)
            soc[label] = np.asarray(ders["battery_soc"])
            taps[label] = np.asarray(ders["regulator_taps"])
            head[label] = abs(h.helicsInputGetComplex(self.sub_voltage[bus]))
        multipliers = np.asarray(h.helicsInputGetVector(self.sub_multipliers))
        nodes = {label: np.asarray(h.helicsInputGetVector(s)) for label, s in zip(self.labels, self.sub_nodes)}
        return Measurements(soc, head, taps, multipliers if len(multipliers) == len(self.labels) else None, nodes)

    def run(self) -> None:
        n_steps = self.scenario.time.n_steps
        dt = self.scenario.time.step_seconds
        K = self.horizon.K
        for k in range(self.config.first_step, n_steps - 1):
            h.helicsFederateRequestTime(self.fed, self.config.step_time(k) + dt / 4)
            for label, s in zip(self.labels, self.sub_nodes):
                self.realised[label].append(np.asarray(h.helicsInputGetVector(s)))
            self.sent = {}
            step = k + 1  # the step the next set-points would apply to
            if not (step - 1) % K:
                self._plan(step)
            if self.scenario.is_checkpoint_step(k):
                h.helicsPublicationPublishString(self.pub_checkpoint, json.dumps({"step": k, "state": self._state()}))

    def _plan(self, step: int) -> None:
        errors = (np.nan, np.nan)
        if self.predicted is not None:
            worst = [voltage_error(np.asarray(self.predicted[f], dtype=float), np.mean(self.realised[f], axis=0))
                     for f in self.labels]
            errors = (max(e[0] for e in worst), float(np.mean([e[1] for e in worst])))
        self.realised = {label: [] for label in self.labels}
        started = time.perf_counter()
        plan = self.horizon.plan(step, self._measure())
        self.predicted = None if plan.failed else plan.predicted_vm
        if not plan.failed:
            self.sent["setpoints"] = {label: message.to_dict() for label, message in plan.setpoints.items()}
            if self.scenario.coordination.dispatch_generators and plan.dispatch_mw is not None and len(plan.dispatch_mw):
                self.sent["dispatch_mw"] = plan.dispatch_mw.tolist()
            self._send(self.sent)
        self._publish_record(plan, time.perf_counter() - started, errors)

    def _send(self, sent: dict) -> None:
        """Set-points to the feeders and the generator dispatch to the transmission federate."""
        for pub, label in zip(self.pub_setpoints, self.labels):
            if label in sent.get("setpoints", {}):
                h.helicsPublicationPublishString(pub, Setpoints.model_validate(sent["setpoints"][label]).to_json())
        if "dispatch_mw" in sent:
            publish_vector(self.pub_dispatch, sent["dispatch_mw"])

    def _state(self) -> dict:
        return {
            "horizon": self.horizon.state(),
            "predicted": None if self.predicted is None else {f: np.asarray(v).tolist() for f, v in self.predicted.items()},
            "realised": {f: [np.asarray(v).tolist() for v in values] for f, values in self.realised.items()},
            "sent": self.sent,
        }

    def _restore(self, saved: dict) -> None:
        """Continue from a checkpoint: the plans so far are made again (see RecedingHorizon.state).
        What was sent after the checkpoint step reached the others after their own checkpoint,
        so it is sent again (in initializing mode)."""
        progress = lambda i, n: print(f"replayed plan {i} of {n}", flush=True)  # noqa: E731 (also tells the launcher it is alive)
        for line in self.horizon.restore(saved["horizon"], progress):
            print(f"replay differs from the first run: {line}", file=sys.stderr, flush=True)
        self.predicted = saved["predicted"]
        self.realised = {f: [np.asarray(v, dtype=float) for v in values] for f, values in saved["realised"].items()}
        self._send(saved["sent"])

    def _publish_record(self, plan, plan_s: float, errors: tuple[float, float]) -> None:
        r = plan.result
        terms = [r.terms.get(t, np.nan) for t in self.horizon.term_names]
        slacks = [r.slacks.get(s, np.nan) for s in SLACKS]
        objective = r.objective if r.objective is not None else np.nan
        planned = [r.feeder_p_kw[f][0] if f in r.feeder_p_kw else np.nan for f in self.labels]
        values = [
            STATUS_CODES.get(r.status, FAILED), objective, *terms, r.solve_s, r.highs_s, r.update_s, plan_s,
            r.n_variables, r.n_constraints, *slacks, *errors, *planned, *_exchanged(r),
        ]
        publish_vector(self.pub_record, values)
        if plan.failed:
            print(f"step {plan.step}: solve {r.status}; the last set-points stay in force", flush=True)

    def finish(self, error: str = "", own_error: bool = False) -> None:
        if getattr(self, "horizon", None) is not None:
            self.horizon.close()
        close_federate(self.fed, error, own_error)


def _exchanged(result) -> tuple[float, float, float]:
    """Coordination rounds, numbers and messages that crossed the TSO-DSO interface in a solve."""
    exchange = getattr(result, "exchange", None)
    if exchange is None:
        return (np.nan, np.nan, np.nan)
    return (float(exchange.iterations), float(exchange.n_values), float(exchange.n_messages))


def main() -> None:
    """`python -m federates.coordinator --config federation.json`."""
    federate_main(CoordinatorFederate, "Tandem coordinator federate (look-ahead OPF)")


if __name__ == "__main__":
    main()
