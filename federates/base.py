"""What every federate process shares: its configuration file, HELICS setup with
timeouts, and the process entry point that turns failures into one-line errors."""

from __future__ import annotations

import argparse
import cProfile
import faulthandler
import json
import os
import signal
import stat
import sys
import threading
import time
import traceback
from pathlib import Path

import helics as h
import numpy as np
from pydantic import BaseModel, ConfigDict

from federates import interfaces as names
from federates.interfaces import Publication
from scenario.schema import Scenario

# Exit codes the launcher reads to tell a federate that failed from one that was
# stopped because another one failed.
EXIT_OWN_ERROR = 3
EXIT_FEDERATION_ERROR = 4
ERROR_PREFIX = "TANDEM-ERROR: "
# The launcher sends it to every federate of a stalled federation: each writes its Python
# stack (all threads) into its log, so the log shows where it waits.
STACK_SIGNAL = signal.SIGUSR1
WARNING_PREFIX = "TANDEM-WARNING: "  # a line the launcher's command shows the user (tandem.study.run_warnings)


class BrokerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    core_type: str
    address: str  # where federates connect
    port: int
    timeout_s: float
    interface: str | None = None  # where the broker listens; None: address
    local_interface: str | None = None  # where each federate listens; None: HELICS chooses
    # The port each federate of this host listens on (zmq and tcp cores), chosen free by the
    # launcher: the broker's own choice (broker_port + 5, + 6, ...) may be taken on a busy machine.
    local_ports: dict[str, int] = {}


class FederationConfig(BaseModel):
    """Written by the launcher into the run folder; every federate reads it."""

    model_config = ConfigDict(extra="forbid")
    scenario: Scenario  # buses resolved to pandapower indices
    scenario_source: str
    output: str
    broker: BrokerConfig
    feeder_groups: list[list[int]]
    boundary_buses: list[int]
    observers: int = 0
    # A resumed run (`tandem run --resume`) starts at first_step > 0; every federate then reads
    # its saved state from resume_state (JSON {"step": first_step - 1, "states": {...}}).
    first_step: int = 0
    resume_state: str | None = None

    @classmethod
    def read(cls, path: str | Path) -> "FederationConfig":
        return cls.model_validate_json(Path(path).read_text())

    def saved_state(self, part: str) -> dict | None:
        """The saved state of one part of the federation (transmission, feeders, coordinator)
        in a resumed run; None in a run from the start."""
        if self.resume_state is None:
            return None
        saved = json.loads(Path(self.resume_state).read_text())
        if saved["step"] != self.first_step - 1 or part not in saved["states"]:
            raise ValueError(f"{self.resume_state} holds no {part} state after step {self.first_step - 1}")
        return saved["states"][part]

    def step_time(self, k: int) -> float:
        """HELICS time of step k (time 0 is reserved for entering execution)."""
        return (k + 1) * self.scenario.time.step_seconds


def create_value_federate(name: str, config: FederationConfig, *, wait_for_current_time: bool = False) -> h.HelicsFederate:
    """A value federate that fails instead of hanging: timeouts, terminate-on-error, uninterruptible."""
    info = h.helicsCreateFederateInfo()
    h.helicsFederateInfoSetCoreTypeFromString(info, config.broker.core_type)
    h.helicsFederateInfoSetCoreInitString(info, core_init_string(config.broker, name))
    h.helicsFederateInfoSetFlagOption(info, h.HELICS_FLAG_TERMINATE_ON_ERROR, True)
    h.helicsFederateInfoSetFlagOption(info, h.HELICS_FLAG_UNINTERRUPTIBLE, True)
    if wait_for_current_time:
        h.helicsFederateInfoSetFlagOption(info, h.HELICS_FLAG_WAIT_FOR_CURRENT_TIME_UPDATE, True)
    h.helicsFederateInfoSetIntegerProperty(info, h.HELICS_PROPERTY_INT_MAX_ITERATIONS, config.scenario.coupling.max_iterations + 5)
    h.helicsFederateInfoSetIntegerProperty(info, h.HELICS_PROPERTY_INT_LOG_LEVEL, h.HELICS_LOG_LEVEL_ERROR)
    started = time.monotonic()
    try:
        return h.helicsCreateValueFederate(name, info)
    except h.HelicsException as exc:
        # With a fixed local port HELICS words it "core is unable to register and has timed out".
        if not any(m in str(exc).lower() for m in ("unable to connect to broker", "unable to register")):
            raise
        # An own error (not "federation stopped"): on another host the broker may be absent or misaddressed.
        b = config.broker
        raise RuntimeError(
            # The time it took, measured: HELICS's retries vary (about timeout_s + 10 s on one host).
            f"cannot reach the HELICS broker at {b.address}:{b.port} ({b.core_type}) after {time.monotonic() - started:.0f} s "
            f"of trying (timeout_s={b.timeout_s:g}): "
            "is it running, and are federation.broker_address and broker_port right?"
        ) from None


def core_init_string(broker: BrokerConfig, name: str) -> str:
    """A federate's core settings. HELICS's own connection retries are kept (about six attempts
    of timeout_s): a tighter budget turned brief hiccups on a busy machine (several federations
    starting at once) into failed runs; an unreachable broker still fails, after a multiple of
    timeout_s that HELICS decides (the error names the time measured)."""
    local = f" --local_interface={broker.local_interface}" if broker.local_interface else ""
    if name in broker.local_ports:
        local += f" --local_port={broker.local_ports[name]}"
    return (
        f"--federates=1 --broker_address={broker.address} --broker_port={broker.port}{local} "
        f"--timeout={broker.timeout_s}s --networktimeout={broker.timeout_s}s"
    )


_HELICS_TYPES = {"vector": h.HELICS_DATA_TYPE_VECTOR, "complex": h.HELICS_DATA_TYPE_COMPLEX, "string": h.HELICS_DATA_TYPE_STRING}


def register_publication(fed: h.HelicsFederate, pub: Publication, **parts) -> h.HelicsPublication:
    """A global publication as federates.interfaces declares it (`parts` fill its key pattern)."""
    return h.helicsFederateRegisterGlobalPublication(fed, pub.name(**parts), _HELICS_TYPES[pub.type], pub.units)


def subscribe(fed: h.HelicsFederate, pub: Publication, **parts) -> h.HelicsInput:
    """A subscription to a declared publication, with its units."""
    return h.helicsFederateRegisterSubscription(fed, pub.name(**parts), pub.units)


# Vectors go to and from HELICS as numpy buffers: pyhelics converts them element by element
# through Python lists, which cost more per step than the recorder's writing (tens of vectors a step).
_ffi, _lib = h.capi.ffi, h.capi.lib


def _check(err) -> None:
    if err.error_code != 0:
        raise h.HelicsException(f"[{err.error_code}] {_ffi.string(err.message).decode()}")


def publish_vector(pub: h.HelicsPublication, values) -> None:
    """Publish a sequence of numbers (as pyhelics's helicsPublicationPublishVector does)."""
    data = np.ascontiguousarray(values, dtype=float)
    err = h.helicsErrorInitialize()
    _lib.helicsPublicationPublishVector(pub.handle, _ffi.from_buffer("double[]", data), data.size, err)
    _check(err)


def read_vector(sub: h.HelicsInput) -> np.ndarray:
    """The input's value as an array of floats (as pyhelics's helicsInputGetVector, but an array)."""
    data = np.empty(_lib.helicsInputGetVectorSize(sub.handle) + 1)
    size = _ffi.new("int[1]")
    err = h.helicsErrorInitialize()
    _lib.helicsInputGetVector(sub.handle, _ffi.from_buffer("double[]", data), data.size, size, err)
    _check(err)
    return data[: size[0]]


def close_federate(fed: h.HelicsFederate | None, error: str = "", own_error: bool = False, patience: float | None = None) -> None:
    """Leave the federation; a federate's own failure is first raised as a global error so
    the others stop at once instead of waiting for it. With `patience` (seconds), give up
    leaving after that long: the process then exits without waiting for the broker."""
    if fed is None:
        return
    if own_error:
        _let_the_recorder_catch_up(fed)
        h.helicsFederateGlobalError(fed, 1, f"{h.helicsFederateGetName(fed)}: {error}")
    if patience is None:
        try:
            h.helicsFederateDisconnect(fed)
        finally:
            h.helicsFederateFree(fed)
        return
    h.helicsFederateDisconnectAsync(fed)
    deadline = time.monotonic() + patience
    while not h.helicsFederateIsAsyncOperationCompleted(fed):
        if time.monotonic() > deadline:
            _LEFT_UNFINISHED.append(fed)  # freeing it, or closing the library, would wait as well
            return
        time.sleep(0.01)
    h.helicsFederateDisconnectComplete(fed)
    h.helicsFederateFree(fed)


RECORDER_CATCH_UP_SECONDS = 10.0


def _let_the_recorder_catch_up(fed: h.HelicsFederate) -> None:
    """Before a failing federate stops the federation, wait (at most RECORDER_CATCH_UP_SECONDS)
    until the recorder has written every step before this one. It may lag a few steps behind,
    with their values queued in its HELICS core; a global error at once would end it before it
    read them, and computed steps would be lost. It has written them once it asks for a time
    beyond this federate's (it records step k at step_time(k) + half a step)."""
    name = h.helicsFederateGetName(fed)
    if name == names.RECORDER:
        return
    try:
        now = h.helicsFederateGetCurrentTime(fed)
        if now <= 0:  # failed before the first step: nothing was computed
            return
        deadline = time.monotonic() + RECORDER_CATCH_UP_SECONDS
        while time.monotonic() < deadline:
            query = h.helicsCreateQuery(names.RECORDER, "current_time")
            try:
                answer = h.helicsQueryExecute(query, fed)  # pyhelics parses the JSON answer
            finally:
                h.helicsQueryFree(query)
            answer = json.loads(answer) if isinstance(answer, str) else answer
            requested = answer.get("requested_time") if isinstance(answer, dict) else None
            if not isinstance(requested, (int, float)) or requested > now:
                return  # no recorder (an observer-only federation, a replay), or it is done
            time.sleep(0.05)
    except (h.HelicsException, ValueError):
        return  # the federation is already going down: nothing to wait for


_LEFT_UNFINISHED: list[h.HelicsFederate] = []  # federates that could not leave in time


ORPHAN_GRACE_SECONDS = 3.0  # for an orphaned federate to close its files before it exits regardless


def watch_parent() -> None:
    """Exit soon after the process that started this one dies (a launcher killed by SIGKILL).
    Its death signal (SIGTERM) is acted on only between HELICS calls, and one may block for a
    minute on a broker that died too: after a grace period the process exits from here. The
    recorder's file is safe to leave at any moment (results.store writes in a safe order)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)  # the orderly way first, if the main thread can act on it
        time.sleep(ORPHAN_GRACE_SECONDS)
        print(f"{ERROR_PREFIX}the process that started this federate (pid {parent}) is gone", file=sys.stderr, flush=True)
        os._exit(EXIT_FEDERATION_ERROR)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def federate_main(federate_class, description: str) -> None:
    """Entry point of a federate process: `python -m federates.X --config federation.json`.

    With TANDEM_PROFILE=<folder> in the environment, the federate's time-stepping loop
    is profiled with cProfile into <folder>/<federate>.prof."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="federation.json written by the launcher")
    parser.add_argument("--group", type=int, default=None, help="feeder group index (feeder federates only)")
    args = parser.parse_args()
    config = FederationConfig.read(args.config)
    federate = federate_class(config) if args.group is None else federate_class(config, args.group)
    watch_parent()
    faulthandler.register(STACK_SIGNAL, all_threads=True)
    profile_dir = os.environ.get("TANDEM_PROFILE")
    profiler = cProfile.Profile() if profile_dir else None
    try:
        federate.setup()
        if profiler:
            profiler.enable()
        federate.run()
        if profiler:
            profiler.disable()
            name = federate_class.__name__ if args.group is None else f"{federate_class.__name__}_{args.group}"
            profiler.dump_stats(Path(profile_dir) / f"{name}.prof")
        federate.finish()
    except h.HelicsException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        federate.finish(error=f"federation stopped: {message}")
        report_error(f"federation stopped ({message})")
        sys.exit(EXIT_FEDERATION_ERROR)
    except Exception as exc:  # report every own failure as one line, details in the log
        try:
            traceback.print_exc(file=sys.stderr)
        except OSError:
            pass  # the log's disk may be full
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        federate.finish(error=message, own_error=True)
        report_error(message)
        sys.exit(EXIT_OWN_ERROR)
    finally:
        if _LEFT_UNFINISHED:  # the broker is gone: closing the library would wait for it
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_FEDERATION_ERROR)
        h.helicsCloseLibrary()
    # Everything is written and closed: skip the interpreter's slow module teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def report_error(message: str) -> None:
    """The one-line error for the launcher, in the log (stderr) and, where stdout is a pipe to
    the launcher (the recorder's progress), there too: a log on a full disk takes no line."""
    line = f"{ERROR_PREFIX}{message}\n"
    streams = [sys.stderr]
    try:
        if os.path.sameopenfile(1, 2) is False and stat.S_ISFIFO(os.fstat(1).st_mode):
            streams.append(sys.stdout)
    except OSError:
        pass
    for stream in streams:
        try:
            stream.write(line)
            stream.flush()
        except OSError:
            pass


def metadata_json(**fields) -> str:
    return json.dumps(fields)
