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
from pathlib import Path
from typing import Callable

import helics as h
import numpy as np

from federates import interfaces as names
from federates.base import FederationConfig, close_federate, create_value_federate, federate_main, read_vector, subscribe
from federates.processes import kind_of, process_names
from grid.ders.registry import READINGS
from results.catalogue import CATALOGUE, der_datasets
from results.store import ResultsWriteError, ResultsWriter, Series

RECORD = names.COORDINATOR_RECORD.key
COORDINATOR_ATTRS = ("scheme", "build_s", "n_variables", "n_constraints", "interval_steps", "periods")  # root attributes
# Per-feeder dimensions of the catalogue -> the feeder metadata list that sizes them; the DER
# kinds' device dimensions are sized by the metadata's `devices` (grid.ders.registry).
FEEDER_LISTS = {"node": "node_names", "battery": "batteries", "pv": "pv", "regulator": "regulators", "capacitor": "capacitors"}
# The catalogue's values taken from the scenario (`how="scenario"`), by its field name.
SCENARIO_VALUES: dict[str, Callable[["RecorderFederate"], object]] = {
    "boundary_buses": lambda r: np.array(r.config.boundary_buses),
    "feeders[].name": lambda r: r.labels,
    "feeders[].model": lambda r: [f.model for f in r.scenario.feeders],
    "feeders[].bus": lambda r: np.array([int(f.bus) for f in r.scenario.feeders]),
}


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
        if resume_rows is None and Path(self.config.output).exists():
            # Joined first, so that the error stops the others instead of leaving them waiting for us.
            self.fed = create_value_federate(names.RECORDER, self.config)
            raise ResultsWriteError(f"{self.config.output} exists: a run does not write over another's results "
                                    "(a replay of runner.json: move them away first)")
        self.writer = ResultsWriter(
            self.config.output, self.scenario.to_json(), self.config.scenario_source, self.scenario.time.n_steps,
            resume_rows=resume_rows, replace=False,
        )
        fed = self.fed = create_value_federate(names.RECORDER, self.config)
        self.labels = [f.label for f in self.scenario.feeders]
        self.groups = [names.feeder_group(g) for g in range(len(self.config.feeder_groups))]
        self.coordinated = self.scenario.coordination.coordinated
        self.catalogue = [d for d in (*CATALOGUE, *der_datasets(READINGS)) if self._exists(d.only)]
        # One subscription per concrete key the catalogue's sources (and the metadata) name.
        self.subs: dict[str, h.HelicsInput] = {}
        wanted = [names.TRANSMISSION_METADATA, names.FEEDER_METADATA, names.COUPLING, names.FEEDER_POWER]
        if self.coordinated:
            wanted += [names.COORDINATOR_METADATA, names.COORDINATOR_RECORD]
        wanted += [names.publication(d.source) for d in self.catalogue if d.source != "scenario"]
        for declared in dict.fromkeys(wanted):
            for key, parts in self._instances(declared):
                self.subs[key] = subscribe(fed, declared, **parts)
        self.sub_checkpoint = {
            federate: subscribe(fed, names.CHECKPOINT, federate=federate)
            for federate in process_names(len(self.groups), self.coordinated) if kind_of(federate).checkpoint_part
        }
        # Asynchronously, so that a stop signal (its launcher gone or stopping) is acted on while the
        # others are still starting, not after HELICS gives up on them.
        h.helicsFederateEnterExecutingModeAsync(fed)
        self._wait_async()
        h.helicsFederateEnterExecutingModeComplete(fed)

    def _exists(self, only: str) -> bool:
        """Whether a run-wide condition of the catalogue holds (conditions on a feeder's devices
        are checked per feeder in `_declare_datasets`)."""
        if only == "coordinated":
            return self.coordinated
        if only == "node_voltages":
            return self.scenario.output.node_voltages
        return True

    def _instances(self, declared: names.Publication) -> list[tuple[str, dict]]:
        """Every concrete key of a publication pattern this run has, with the parts that fill it."""
        if "{feeder}" in declared.key:
            parts = [{"feeder": f} for f in self.labels]
        elif "{group}" in declared.key:
            parts = [{"group": g} for g in range(len(self.groups))]
        else:
            parts = [{}]
        return [(declared.name(**p), p) for p in parts]

    def _keys(self, declared: names.Publication) -> list[str]:
        return [key for key, _ in self._instances(declared)]

    def _request_time(self, t: float) -> None:
        h.helicsFederateRequestTimeAsync(self.fed, t)
        self._wait_async()
        h.helicsFederateRequestTimeComplete(self.fed)

    def _wait_async(self) -> None:
        while not h.helicsFederateIsAsyncOperationCompleted(self.fed):
            check_stop()
            time.sleep(0.002)

    def _metadata(self, key: str) -> dict:
        return json.loads(h.helicsInputGetString(self.subs[key]))

    def _declare_datasets(self) -> None:
        """Create the file layout from the catalogue once the other federates have told their
        names and sizes, and resolve where each row value comes from (positions in the vectors)."""
        w = self.writer
        meta = {names.TRANSMISSION_METADATA.key: self._metadata(names.TRANSMISSION_METADATA.key)}
        for label in self.labels:
            meta[names.FEEDER_METADATA.name(feeder=label)] = self._metadata(names.FEEDER_METADATA.name(feeder=label))
        if self.coordinated:
            meta[names.COORDINATOR_METADATA.key] = self._metadata(names.COORDINATOR_METADATA.key)
            self.coordinator_layout = meta[names.COORDINATOR_METADATA.key]["layout"]
            for key in COORDINATOR_ATTRS:
                w.file.attrs[f"coordinator_{key}"] = meta[names.COORDINATOR_METADATA.key][key]
        transmission = meta[names.TRANSMISSION_METADATA.key]
        self.boundary_pos = np.array([transmission["bus_names"].index(str(b)) for b in self.config.boundary_buses])
        # Sizes of the run-wide dimensions and of the wire's groups.
        sizes = {"boundary": len(self.boundary_pos), "feeder": len(self.labels), "phase": 3, "bus": len(transmission["bus_names"]),
                 "branch": len(transmission["branch_names"]), "feeder_process": len(self.groups)}
        if self.coordinated:
            sizes.update(term=len(meta[names.COORDINATOR_METADATA.key]["terms"]), slack=len(meta[names.COORDINATOR_METADATA.key]["slacks"]))
        feeder_sizes = {}  # feeder -> dimension and wire group sizes from its metadata
        for label in self.labels:
            feeder_meta = meta[names.FEEDER_METADATA.name(feeder=label)]
            lists = {key: len(feeder_meta[key]) for key in FEEDER_LISTS.values()}
            devices = {dim: len(units) for dim, units in feeder_meta["devices"].items()}
            feeder_sizes[label] = {**{dim: lists[key] for dim, key in FEEDER_LISTS.items()}, **lists, **devices}
        self.readers: list[tuple[str, Callable[[dict], object]]] = []
        self.stacked: dict[str, int] = {}  # per-feeder source -> elements stacked over feeders
        self.stacked_keys: dict[str, list[str]] = {}  # per-feeder source -> its keys, feeder by feeder
        self._last_counter: dict[str, np.ndarray] = {}
        for d in self.catalogue:
            source = None if d.source == "scenario" else names.publication(d.source)
            for label in (self.labels if "<name>" in d.path else [None]):
                feeder = {} if label is None else feeder_sizes[label]
                if d.only and d.only in feeder and not feeder[d.only]:
                    continue  # the feeder has no device of this kind
                path = d.path if label is None else d.for_feeder(label)
                description = d.description if label is None else d.description.replace("<name>", label)
                if d.static:
                    w.add_static(path, self._static_value(d, source, label, meta), d.units, d.dims, description)
                    continue
                shape = tuple((feeder or sizes)[dim] for dim in d.dims)
                w.add_series(Series(path, shape, d.units, d.dims, description, d.dtype))
                self.readers.append((path, self._reader(d, source, label, {**sizes, **feeder})))
        # Each vector read per step, with the length the wire table gives it: a producer whose
        # layout differs from this reader's (another version on another host) is found at once.
        self.vector_lengths, self.lengths_checked = {}, False
        for declared in {names.publication(d.source) for d in self.catalogue if not d.static and d.how != "layout"}:
            for key, parts in self._instances(declared):
                self.vector_lengths[key] = declared.length({**sizes, **feeder_sizes.get(parts.get("feeder"), {})})

    def _static_value(self, d, source, label: str | None, meta: dict):
        if d.how == "scenario":
            return SCENARIO_VALUES[d.fields[0]](self)
        if d.how == "device_names":
            return meta[source.name(feeder=label)]["devices"][d.fields[0]]
        if d.how == "metadata":
            values = meta[source.name(feeder=label) if label else source.key][d.fields[0]]
            return values if values and isinstance(values[0], str) else np.array(values)
        return read_vector(self.subs[source.key])[source.positions(d.fields, {"feeder": len(self.labels)})]

    def _reader(self, d, source, label: str | None, sizes: dict) -> Callable[[dict], object]:
        """How one dataset's row value is taken from the step's vectors (`_read` gives them)."""
        if d.how == "layout":
            name = d.fields[0]
            if name.endswith("/"):
                return lambda values: np.array([v for k, v in values[RECORD].items() if k.startswith(name)])
            return lambda values: values[RECORD][name]
        at = source.positions(d.fields, sizes)
        if d.how == "feeders":
            if not isinstance(at, (int, slice)) or any(source.field(f).per for f in d.fields):
                raise ValueError(f"{d.path}: only single fields can be stacked over feeders")
            end = at + 1 if isinstance(at, int) else at.stop
            self.stacked[source.key] = max(self.stacked.get(source.key, 0), end)
            self.stacked_keys[source.key] = self._keys(source)
            return lambda values: values[source.key][:, at]
        if d.how == "feeder":
            key = source.name(feeder=label)
            return lambda values: values[key][at]
        if d.how == "at_boundary":
            return lambda values: values[source.key][at][self.boundary_pos]
        if d.how == "per_step":
            return lambda values: self._per_step(d.path, values[source.key][at])
        if d.how == "groups":
            keys = self._keys(source)
            return lambda values: self._per_step(d.path, np.array([values[k][at] for k in keys]))
        return lambda values: values[source.key][at]

    def _per_step(self, path: str, counter) -> np.ndarray:
        """The step's share of a cumulative counter."""
        step = counter - self._last_counter.get(path, 0.0)
        self._last_counter[path] = counter
        return step

    def _read(self) -> dict:
        """Every vector of the step, once: by key; per-feeder sources also stacked over the
        feeders (by pattern, their first elements), and the coordinator's record by name."""
        values = {key: read_vector(self.subs[key]) for key in self.vector_lengths}
        if not self.lengths_checked:  # at the first step
            wrong = [(key, len(values[key]), n) for key, n in self.vector_lengths.items() if len(values[key]) != n]
            if wrong:
                key, got, n = wrong[0]
                raise RuntimeError(f"{key} has {got} elements where federates.interfaces declares {n}: "
                                   "publisher and recorder disagree on its layout")
            self.lengths_checked = True
        for pattern, n in self.stacked.items():
            values[pattern] = np.array([values[key][:n] for key in self.stacked_keys[pattern]])
        if self.coordinated:
            values[RECORD] = self._coordinator_values()
        return values

    def _row(self, k: int) -> dict[str, np.ndarray]:
        # Every step brings new values from the transmission and every feeder. None means one of
        # them has left: the federation is stopping because of it, and this is no error of ours.
        sources = ((names.TRANSMISSION, names.COUPLING.key), *((f, names.FEEDER_POWER.name(feeder=f)) for f in self.labels))
        stale = [name for name, key in sources if not h.helicsInputIsUpdated(self.subs[key])]
        if stale:
            raise h.HelicsException(f"no values from {stale[0]} for step {k}: a federate has left")
        values = self._read()
        return {path: reader(values) for path, reader in self.readers}

    def _coordinator_values(self) -> dict[str, float]:
        """The record of the plan made after this step, by layout name; NaN and status -1 without one."""
        layout, sub = self.coordinator_layout, self.subs[RECORD]
        if h.helicsInputIsUpdated(sub):
            return dict(zip(layout, h.helicsInputGetVector(sub)))
        values = dict.fromkeys(layout, np.nan)
        values["status"] = -1
        return values

    def run(self) -> None:
        n_steps = self.scenario.time.n_steps
        dt = self.scenario.time.step_seconds
        for k in range(self.config.first_step, n_steps):
            check_stop()
            self._request_time(self.config.step_time(k) + dt / 2)
            if k == self.config.first_step:
                self._declare_datasets()
                self.writer.flush()  # the layout on disk before any row: a file killed later has it
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
            kind = kind_of(federate)
            if kind.count == "per feeder group":  # one part for all groups: their states by feeder name
                states.setdefault(kind.checkpoint_part, {}).update(message["state"])
            else:
                states[kind.checkpoint_part] = message["state"]
        self.writer.checkpoint(k, {part: json.dumps(state) for part, state in states.items()})
        print(f"checkpoint after step {k} written", file=sys.stderr, flush=True)

    def finish(self, error: str = "", own_error: bool = False) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the file is closed whole (the launcher SIGKILLs if it hangs)
        if self.writer is not None:
            complete = not error and self.writer.rows_received == self.scenario.time.n_steps
            self.writer.finish(complete=complete, error=error)
        # Stopped by a signal, the federation is being torn down (or its launcher is gone, and
        # with it the broker): leaving it politely could wait a minute for a broker that is gone.
        close_federate(self.fed, error, own_error, patience=1.0 if _stop_signals else None)


def main() -> None:
    """`python -m federates.recorder --config federation.json`."""
    federate_main(RecorderFederate, "Tandem recorder federate (HDF5)")


if __name__ == "__main__":
    main()
