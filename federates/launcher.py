"""The launcher: starts a real `helics_broker` and one process per federate, watches
them, and makes sure a run either completes or fails cleanly.

Clean failure means: the first federate to fail is named in a one-line error, the
recorder is asked to close the HDF5 file (everything written so far stays
readable, the completion flag stays unset), every other process is killed, and
nothing is left running. A run that makes no progress for longer than the
federation timeout is treated the same way, so a run never hangs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Callable

from federates import interfaces as names
from federates.activity import BUSY_WINDOW_SECONDS, BusyWatch, process_stopped
from federates.base import ERROR_PREFIX, EXIT_FEDERATION_ERROR, EXIT_OWN_ERROR, STACK_SIGNAL, BrokerConfig, FederationConfig
from federates.forked import ForkedProcess, die_with_parent, preload, python_module
from federates.processes import BROKER, FEDERATE_MODULES, kind_of, listing, process_names  # noqa: F401 (FEDERATE_MODULES: for tandem.sweep_cases)
from results.checkpoint import Checkpoint, CheckpointError, truncate_to_checkpoint
from results.store import RunFile
from scenario.schema import Scenario, ScenarioError

GRACE_SECONDS = 5.0  # for the recorder to close the file, and processes to exit
BLAME_SECONDS = 3.0  # for the federate that failed first to report it
PROBE_SECONDS = 2.0  # between checks that a broker on another host still listens
MARK_SPACE_BYTES = 1 << 20  # free space needed to write the failure into the results file


class RunFailed(RuntimeError):
    """The run did not complete; the message is one line naming the culprit."""


@dataclass
class RunPlan:
    """Everything needed to start the federation, written to the run folder."""

    config: FederationConfig
    run_dir: Path
    config_path: Path
    runner_path: Path
    commands: dict[str, list[str]]  # name -> argv of the processes started here, broker first
    elsewhere: list[str] = field(default_factory=list)  # processes of the run started on other hosts
    lock: IO | None = None  # held while the run lives: a second run into the same output refuses (claim_output)


@dataclass
class Progress:
    steps_done: int = 0
    n_steps: int = 0
    updated_at: float = field(default_factory=time.monotonic)


def default_output(scenario: Scenario) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs/output") / f"{scenario.name}_{stamp}.h5"


def free_port(address: str = "127.0.0.1") -> int:
    """A port that is free now, with the next one free too (the zmq broker binds two)."""
    address = "0.0.0.0" if address == "*" else address
    for _ in range(50):
        with socket.socket() as s:
            try:
                s.bind((address, 0))
            except OSError as exc:
                raise RunFailed(f"the HELICS broker cannot listen on {address}: {exc.strerror} (federation.broker_interface)") from None
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind((address, port + 1))
                    return port
                except OSError:
                    continue
    raise RunFailed("could not find a free port for the HELICS broker")


def check_port_free(address: str, port: int, core_type: str) -> None:
    """A fixed broker port must be free before anything starts: another run's broker on it would
    take this run's federates into its federation, and both runs would fail."""
    ports = (port, port + 1) if core_type.startswith("zmq") else (port,)  # a zmq broker binds two
    for p in ports:
        with socket.socket() as s:
            # As the broker binds: a port left in TIME_WAIT by an earlier run is free, a listening one is not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0" if address == "*" else address, p))
            except OSError as exc:
                raise RunFailed(f"federation.broker_port: port {p} on {address} is in use ({exc.strerror}), e.g. by "
                                "another run's broker; give another --broker-port, or 'auto'") from None


def free_local_ports(federates: list[str], interface: str | None, taken: set[int]) -> dict[str, int]:
    """A port free now for each named federate to listen on, none of them in `taken`."""
    address = "0.0.0.0" if interface in (None, "*") else interface
    held: list[socket.socket] = []  # held open until all are drawn, so no port is drawn twice
    ports: list[int] = []
    try:
        while len(ports) < len(federates):
            s = socket.socket()
            held.append(s)
            try:
                s.bind((address, 0))
            except OSError as exc:
                raise RunFailed(f"federates cannot listen on {address}: {exc.strerror} (federation.local_interface)") from None
            if s.getsockname()[1] not in taken:
                ports.append(s.getsockname()[1])
        return dict(zip(federates, ports))
    finally:
        for s in held:
            s.close()


def feeder_groups(n_feeders: int, processes: int | str, iterative: bool) -> list[list[int]]:
    """Split feeders into process groups, round-robin. `auto` in loose coupling: one per core
    left after the transmission federate and the recorder; in iterative coupling always one,
    since HELICS iterations must stay between two federates."""
    if processes == "auto":
        # The CPUs this process may use (a Slurm job's allocation), not the host's.
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n = 1 if iterative else max(1, min(n_feeders, cpus - 2))
    else:
        n = min(int(processes), n_feeders)
    return [list(range(g, n_feeders, n)) for g in range(n)]


def helics_broker_executable() -> str:
    """The broker binary itself. The `helics_broker` on PATH from pip is a wrapper that runs the
    binary as its child, and killing the wrapper would leave that broker running."""
    import helics

    bundled = Path(helics.__file__).parent / "install" / "bin" / "helics_broker"
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("helics_broker")
    if found:
        return found
    raise RunFailed("helics_broker not found: install the 'helics' package (pip install helics)")


def plan_run(
    scenario: Scenario,
    scenario_source: str,
    boundary_buses: list[int],
    output: Path,
    observers: int = 0,
    only: list[str] | None = None,
    resume: Checkpoint | None = None,
) -> RunPlan:
    """Resolve ports and process groups and write federation.json and the helics runner file;
    with `resume`, also the checkpoint's states (resume.json) the federates continue from.

    With `only`, just those processes (names as in runner.json) are planned to start here; the
    others run elsewhere, e.g. on other hosts, from their own plan of the same scenario."""
    fed_spec = scenario.federation
    groups = feeder_groups(len(scenario.feeders), fed_spec.feeder_processes, scenario.coupling.mode == "iterative")
    all_names = process_names(len(groups), scenario.coordination.coordinated)
    if only is not None:
        _check_split(scenario, only, all_names)
    output = output.resolve()
    run_dir = output.with_name(output.stem + "_run")
    lock = claim_output(run_dir, output, "" if only is None else "_" + next(n for n in all_names if n in only))
    if resume is not None:
        # Under the lock: a second --resume of the same file refuses instead of cutting back
        # the rows the first one is writing.
        try:
            truncate_to_checkpoint(output, resume.rows)
        except CheckpointError:
            lock.close()
            raise
    if resume is not None and (run_dir / "logs").is_dir():  # keep the logs of the run being resumed
        (run_dir / "logs").rename(run_dir / f"logs_before_step_{resume.rows}_{datetime.now():%Y%m%d-%H%M%S}")
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    resume_state = None
    if resume is not None:
        resume_state = run_dir / "resume.json"
        resume_state.write_text(json.dumps({"step": resume.step, "states": resume.states}))
    interface = fed_spec.broker_interface or fed_spec.broker_address
    port = free_port(interface) if fed_spec.broker_port == "auto" else int(fed_spec.broker_port)
    if fed_spec.broker_port != "auto" and (only is None or BROKER in only):
        check_port_free(interface, port, fed_spec.core_type)
    local_ports = {}
    if fed_spec.core_type in ("zmq", "tcp"):  # the _ss cores' federates listen on no port
        here = [n for n in all_names if n != BROKER and (only is None or n in only)]
        local_ports = free_local_ports(here, fed_spec.local_interface, {port, port + 1})
    config = FederationConfig(
        scenario=scenario,
        scenario_source=scenario_source,
        output=str(output),
        broker=BrokerConfig(
            core_type=fed_spec.core_type, address=fed_spec.broker_address, port=port, timeout_s=fed_spec.timeout_s,
            interface=interface, local_interface=fed_spec.local_interface, local_ports=local_ports,
        ),
        feeder_groups=groups,
        boundary_buses=sorted(set(boundary_buses)),
        observers=observers,
        first_step=0 if resume is None else resume.rows,
        resume_state=None if resume_state is None else str(resume_state),
    )
    # A part of a split run names its files after its first process: parts may share the folder.
    suffix = "" if only is None else "_" + next(n for n in all_names if n in only)
    config_path = run_dir / f"federation{suffix}.json"

    n_federates = len(all_names) - 1 + observers  # every process but the broker is a HELICS federate
    broker = [
        helics_broker_executable(),
        f"--federates={n_federates}",
        f"--coretype={fed_spec.core_type}",
        f"--local_interface={interface}",
        f"--port={port}",
        f"--timeout={fed_spec.timeout_s}s",
        "--loglevel=error",
    ]
    commands = {name: broker if name == BROKER else kind_of(name).argv(name, config_path) for name in all_names}

    def replayed(argv: list[str]) -> list[str]:
        # A replay of runner.json has no observers: its broker waiting for them would wait forever.
        return [f"--federates={n_federates - observers}" if a == f"--federates={n_federates}" else a for a in argv]

    elsewhere = [n for n in commands if only is not None and n not in only]
    commands = {n: argv for n, argv in commands.items() if n not in elsewhere}
    _write_whole(config_path, config.model_dump_json(indent=2))
    runner_path = run_dir / f"runner{suffix}.json"
    runner = {
        "name": f"tandem-{scenario.name}",
        "broker": False,  # the broker is listed below with its port and federate count
        "federates": [
            {"name": name, "host": "localhost", "directory": str(Path.cwd()), "exec": shlex.join(replayed(argv))}
            for name, argv in commands.items()
        ],
    }
    _write_whole(runner_path, json.dumps(runner, indent=2))
    return RunPlan(config, run_dir, config_path, runner_path, commands, elsewhere, lock)


def _write_whole(path: Path, text: str) -> None:
    """Write a file others may read at any moment (federates, tests, a replay) all at once:
    a reader sees the old file or the new one, never a half-written one."""
    staging = path.with_name(path.name + ".writing")
    staging.write_text(text)
    staging.replace(path)


def claim_output(run_dir: Path, output: Path, part: str = "") -> IO:
    """Lock the run folder for this run (a part of a split run: for that part) before anything in
    it is written: a second run given the same output then refuses at once instead of
    overwriting the first one's configs, logs and file. The lock goes with this process."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / f".lock{part}", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise RunFailed(f"{output} is being written by another run (tandem pid {holder}) still going; "
                        "give another -o (or output.path), or wait for it to end") from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _check_split(scenario: Scenario, only: list[str], all_names: list[str]) -> None:
    """Every part of a split run plans the same federation on its own host: nothing may depend
    on the host (a free port, its core count)."""
    if not only:
        raise ScenarioError(f"--federates: name at least one process ({listing()})")
    if len(set(only)) != len(only):
        raise ScenarioError(f"--federates: a process is named twice in {','.join(only)}")
    unknown = [n for n in only if n not in all_names]
    if unknown:
        raise ScenarioError(f"--federates: this run has no process {unknown[0]!r}; it has {', '.join(all_names)}")
    fed_spec = scenario.federation
    if fed_spec.broker_port == "auto":
        raise ScenarioError(
            "federation.broker_port: starting only some processes (--federates) needs a fixed port, "
            "the same on every host (set it, or give --broker-port)"
        )
    if fed_spec.feeder_processes == "auto":
        raise ScenarioError(
            "federation.feeder_processes: starting only some processes (--federates) needs a number, "
            "the same on every host, since 'auto' depends on the host's cores (set it, or give --feeder-processes)"
        )


class Federation:
    """The running processes of one run."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.procs: dict[str, subprocess.Popen | ForkedProcess] = {}
        self._progress = None  # the recorder's progress lines
        self.recorder_error = ""  # its one-line error, from the same pipe
        self.progress = Progress(steps_done=plan.config.first_step, n_steps=plan.config.scenario.time.n_steps)
        self._logs: list = []

    def start(self) -> None:
        """Start the broker (an executable), then fork every federate (see federates.forked)
        once their modules are imported here; the broker comes up meanwhile."""
        logs = {name: open(self.plan.run_dir / "logs" / f"{name}.log", "w") for name in self.plan.commands}
        self._logs.extend(logs.values())
        for name, argv in self.plan.commands.items():
            if python_module(argv) is None:
                self.procs[name] = subprocess.Popen(
                    argv, stdout=logs[name], stderr=logs[name], stdin=subprocess.DEVNULL,
                    start_new_session=True, preexec_fn=die_with_parent,  # SIGTERM if the launcher dies
                )
        for module in dict.fromkeys(filter(None, map(python_module, self.plan.commands.values()))):
            preload(module)
        self._fork_federates(logs)
        if self._progress is not None:
            threading.Thread(target=self._read_progress, daemon=True).start()

    def _fork_federates(self, logs: dict) -> None:
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            for name, argv in self.plan.commands.items():
                if python_module(argv) is None:
                    continue
                if name == names.RECORDER:  # its progress lines come through a pipe
                    read_end, write_end = os.pipe()
                    self._progress = os.fdopen(read_end, "r")
                    self.procs[name] = ForkedProcess(argv, devnull, write_end, logs[name].fileno())
                    os.close(write_end)
                else:
                    self.procs[name] = ForkedProcess(argv, devnull, logs[name].fileno(), logs[name].fileno())
        finally:
            os.close(devnull)

    def _read_progress(self) -> None:
        for line in self._progress:
            if line.startswith(ERROR_PREFIX):  # also in its log, unless that could not be written
                self.recorder_error = line[len(ERROR_PREFIX):].strip()
                continue
            parts = line.split()
            if len(parts) == 3 and parts[0] == "progress":
                self.progress.steps_done = int(parts[1])
                self.progress.updated_at = time.monotonic()

    def log_tail(self, name: str) -> str:
        """The federate's own one-line error, if it wrote one."""
        path = self.plan.run_dir / "logs" / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        for line in reversed(lines):
            if line.startswith(ERROR_PREFIX):
                return line[len(ERROR_PREFIX):]
        if name != names.RECORDER:
            return ""
        deadline = time.monotonic() + 1.0  # the pipe's reader may not have read it yet
        while not self.recorder_error and time.monotonic() < deadline and self._progress is not None:
            time.sleep(0.02)
        return self.recorder_error

    def broker_listens(self) -> bool:
        """Whether the broker's port accepts a connection (a broker started elsewhere)."""
        b = self.plan.config.broker
        try:
            with socket.create_connection((b.address, b.port), timeout=PROBE_SECONDS):
                return True
        except OSError:
            return False

    def wait(self, on_progress: Callable[[Progress], None] | None = None) -> None:
        """Block until every federate has finished; raise RunFailed naming the first failure."""
        timeout = self.plan.config.broker.timeout_s
        federates = [n for n in self.procs if n != BROKER]
        limit = 2 * timeout + 30
        # Progress comes from the recorder; a broker started elsewhere is watched through its port,
        # since HELICS federates still entering initialization wait for a lost broker forever.
        watched = names.RECORDER in self.procs
        remote_broker = BROKER not in self.procs
        broker_seen = next_probe = time.monotonic()
        busy = BusyWatch({p.pid for n, p in self.procs.items() if n != BROKER})
        while True:
            if on_progress:
                on_progress(self.progress)
            if any(self.procs[n].poll() not in (None, 0) for n in federates):
                raise RunFailed(self._blame())
            if federates and all(self.procs[n].poll() == 0 for n in federates):
                break
            broker = self.procs[BROKER].poll() if BROKER in self.procs else None
            if broker not in (None, 0):  # it exits 0 by itself once every federate has left
                raise RunFailed(f"the HELICS broker exited early with code {broker}; see {self.plan.run_dir / 'logs' / 'broker.log'}")
            if broker == 0 and not federates:
                break  # a part that runs only the broker
            if remote_broker and time.monotonic() >= next_probe:
                if self.broker_listens():
                    broker_seen = time.monotonic()
                elif time.monotonic() - broker_seen > limit:
                    b = self.plan.config.broker
                    raise RunFailed(
                        f"the HELICS broker at {b.address}:{b.port} has not answered for {time.monotonic() - broker_seen:.0f} s "
                        f"(timeout_s={timeout:g}); started elsewhere: {', '.join(self.plan.elsewhere)}"
                    )
                next_probe = time.monotonic() + PROBE_SECONDS
            if not watched:
                time.sleep(0.05)
                continue
            started = self.progress.steps_done > self.plan.config.first_step
            stalled = time.monotonic() - max(self.progress.updated_at, 0.0 if started else self._replay_activity())
            busy.sample()
            # Before the first step, observers may still be joining: give them ten minutes more.
            # A federate that computes (a long first plan) is no stall, however long it takes.
            if stalled > limit + (0 if started or not self.plan.config.observers else 600) and not busy.working():
                where = self._after_steps() if started else "before the first step"
                stopped = [n for n in self.procs if self.procs[n].poll() is None and process_stopped(self.procs[n].pid)]
                if stopped:
                    raise RunFailed(
                        f"{'the HELICS broker' if stopped[0] == BROKER else f'federate {stopped[0]!r}'} "
                        f"(pid {self.procs[stopped[0]].pid}) is stopped (SIGSTOP?): no progress for {stalled:.0f} s {where}"
                    )
                self._dump_stacks()
                elsewhere = f"; started elsewhere: {', '.join(self.plan.elsewhere)}" if self.plan.elsewhere else ""
                raise RunFailed(
                    f"no progress for {stalled:.0f} s {where}, and no federate working for {BUSY_WINDOW_SECONDS:g} s: the federation "
                    f"stalled (timeout_s={timeout:g}{elsewhere}); logs, with the stack of every federate, in {self.plan.run_dir / 'logs'}"
                )
            time.sleep(0.05)
        if on_progress:
            on_progress(self.progress)
        try:
            if BROKER in self.procs:
                self.procs[BROKER].wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # federates are done and results written; the broker is stopped in close()

    def _dump_stacks(self) -> None:
        """Ask every federate still running to write its Python stack into its log (the
        faulthandler federates.base registers): where a stalled federation waits."""
        alive = [p for n, p in self.procs.items() if n != BROKER and p.poll() is None]
        for proc in alive:
            try:
                os.kill(proc.pid, STACK_SIGNAL)
            except (ProcessLookupError, PermissionError):
                pass
        if alive:
            time.sleep(0.5)  # faulthandler writes from its signal handler at once

    def _replay_activity(self) -> float:
        """When (monotonic clock) a resumed run's coordinator or feeders last reported a replay:
        the coordinator makes all plans so far again before the first step, and feeders with
        inverter controls replay their journal; that is progress too."""
        if not self.plan.config.first_step:
            return 0.0
        modified = 0.0
        for name in self.procs:
            if kind_of(name).replays_on_resume:
                try:
                    modified = max(modified, (self.plan.run_dir / "logs" / f"{name}.log").stat().st_mtime)
                except OSError:
                    pass
        return time.monotonic() - max(0.0, time.time() - modified) if modified else 0.0

    def _after_steps(self) -> str:
        """Where the run got: "after step k" names the last step recorded by its 0-based index,
        as checkpoint messages do, and the count follows to leave no doubt."""
        done = self.progress.steps_done
        on_disk = self._rows_on_disk()
        if on_disk is not None:  # a killed recorder loses the rows it had not flushed (up to a second)
            done = on_disk
        return f"after step {done - 1} ({done} of {self.progress.n_steps} steps recorded)" if done else "before the first step"

    def _rows_on_disk(self) -> int | None:
        """The rows the results file holds, once the recorder (of this host) has exited; None
        while it runs or where the file cannot be read."""
        recorder = self.procs.get(names.RECORDER)
        if recorder is None or recorder.poll() is None:
            return None
        try:
            with RunFile(self.plan.config.output) as run:
                return run.n_steps
        except (OSError, KeyError, ValueError):
            return None

    def _let_the_recorder_finish(self) -> None:
        """Wait (at most BLAME_SECONDS) for the recorder to exit, so that "after step k" counts
        the rows it wrote, not those it had reported when another federate died: it goes on
        writing what it already received until the federation's stop reaches it."""
        recorder = self.procs.get(names.RECORDER)
        deadline = time.monotonic() + BLAME_SECONDS
        while recorder is not None and recorder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.05)  # its last progress line, read by the progress thread

    def _blame(self) -> str:
        """Name the federate that caused the failure, not the ones stopped because of it."""
        # The federation stops as a whole once one federate fails: give the others a moment to
        # exit, so the one that failed on its own (not the ones stopped with it) is named.
        deadline = time.monotonic() + BLAME_SECONDS
        federates = [n for n in self.procs if n != BROKER]
        while time.monotonic() < deadline:
            codes = [self.procs[n].poll() for n in federates]
            if all(c is not None for c in codes) or any(c == EXIT_OWN_ERROR or (c or 0) < 0 for c in codes):
                break
            time.sleep(0.05)
        failed = [n for n in federates if self.procs[n].poll() not in (None, 0)]
        for name in failed:
            code = self.procs[name].returncode
            if code < 0:
                self._let_the_recorder_finish()
                return f"federate '{name}' (pid {self.procs[name].pid}) was killed by {signal.Signals(-code).name} {self._after_steps()}"
        hung = self._hung_broker(failed)
        if hung:
            return hung
        # A stopped federate (SIGSTOP, a debugger) stops answering its core's pings: the others
        # fail with HELICS's "lost comms". The stopped one is the cause.
        stopped = [n for n in federates if self.procs[n].poll() is None and process_stopped(self.procs[n].pid)]
        if stopped and failed:
            name = stopped[0]
            return (f"federate '{name}' (pid {self.procs[name].pid}) is stopped (SIGSTOP?) and stopped answering "
                    f"{self._after_steps()}: federate '{failed[0]}' reports: "
                    f"{self.log_tail(failed[0]) or f'exit code {self.procs[failed[0]].returncode}'}")
        for name in failed:
            if self.procs[name].returncode == EXIT_OWN_ERROR:
                return f"federate '{name}' failed: {self.log_tail(name) or 'see its log'}"
        name = failed[0]
        code = self.procs[name].returncode
        detail = self.log_tail(name) or f"exit code {code}"
        if code == EXIT_FEDERATION_ERROR:
            return f"federate '{name}' stopped: {detail}"
        return f"federate '{name}' failed: {detail}"

    def _hung_broker(self, failed: list[str]) -> str:
        """The broker, when it is why the federates failed: it is stopped (process state T), or
        every failure is a lost contact with it (HELICS timeouts, "cannot reach") and it still
        runs after every federate has exited. A healthy broker exits
        once its federates are gone; a hung or stopped one does not. Blaming the first federate
        to time out would send the user after the wrong process. "" if not the broker."""
        broker = self.procs.get(BROKER)
        if broker is None or not failed or broker.poll() is not None:
            return ""
        stopped = process_stopped(broker.pid)
        # A stopped broker is the cause whatever the federates made of it (timeouts, or "feeders
        # did not answer" from a transmission federate whose messages it no longer relays).
        lost = lambda n: (self.procs[n].returncode == EXIT_FEDERATION_ERROR  # noqa: E731
                          or self.log_tail(n).startswith("cannot reach the HELICS broker"))
        if not stopped and (self.plan.config.observers or not all(lost(n) for n in failed)):
            return ""
        if not stopped:
            if any(self.procs[n].poll() is None for n in self.procs if n != BROKER):
                return ""  # a federate still runs (perhaps the one that hangs): not clearly the broker
            try:
                broker.wait(timeout=BLAME_SECONDS)
                return ""  # it left with its federates: not hung
            except subprocess.TimeoutExpired:
                pass
        how = "is stopped (SIGSTOP?) and" if stopped else "still runs but"
        return (f"the HELICS broker (pid {broker.pid}) {how} stopped answering its federates {self._after_steps()}: "
                f"federate '{failed[0]}' reports: {self.log_tail(failed[0]) or f'exit code {self.procs[failed[0]].returncode}'}")

    def close(self) -> None:
        """Stop whatever still runs: the recorder gently (it closes the file), the rest hard."""
        recorder = self.procs.get(names.RECORDER)
        if recorder is not None and recorder.poll() is None:
            recorder.send_signal(signal.SIGTERM)
            try:
                recorder.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            # Each process leads its own session: kill the group, so nothing it started survives.
            # Only while it is not reaped: a reaped pid may already lead another run's process.
            if proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        for log in self._logs:
            log.close()
        if self._progress is not None:
            self._progress.close()


def mark_failed(output: Path, message: str) -> None:
    """Record the failure reason in the results file, if the recorder got to create it."""
    import h5py

    output.with_name(output.name + ".creating").unlink(missing_ok=True)  # the recorder died making the file
    try:
        # Not on a full disk: a write cut short there could tear the attributes already saved.
        if shutil.disk_usage(output.parent).free < MARK_SPACE_BYTES:
            return
        with h5py.File(output, "r+") as f:
            f.attrs["complete"] = False
            f.attrs["error"] = message
    except (OSError, KeyError):
        pass  # no file, or unreadable: the error is still reported on the console


def _held_open(path: Path) -> bool:
    """Whether another process holds an HDF5 file open for writing (HDF5 locks it with flock)."""
    try:
        with open(path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _do_nothing(signum, frame) -> None:
    pass


@contextmanager
def _stop_signals_held():
    """Ctrl-C and SIGTERM ignored while the federation is being stopped: a cancelled Slurm case
    sends both at once (Slurm's SIGTERM, its case runner's SIGINT), and Slurm signals the
    federates too, so a stop signal may also arrive while a failure is being cleaned up; none
    may cut the cleanup short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A handler that does nothing, not SIG_IGN: Python reports a signal already pending when
    # SIG_IGN is set as "ignored due to race condition" on stderr.
    saved = {sig: signal.signal(sig, _do_nothing) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_federation(plan: RunPlan, on_progress: Callable[[Progress], None] | None = None) -> None:
    """Start, watch and stop the federation; raises RunFailed (or KeyboardInterrupt) on failure."""
    federation = Federation(plan)
    # Only the recorder's host marks the file: it may be on another host, or still open there.
    records = names.RECORDER in plan.commands
    if records and not plan.config.first_step:
        # A new run writes a new file; the recorder refuses to write over one (a replay of
        # runner.json must not destroy the run it replays), so the old one goes here, unless
        # another run is still writing it.
        output = Path(plan.config.output)
        if _held_open(output):
            raise RunFailed(f"{output} is being written by another run (its recorder holds it): give this run another --output")
        output.unlink(missing_ok=True)
    try:
        federation.start()
        federation.wait(on_progress)
    except (RunFailed, KeyboardInterrupt) as exc:
        if isinstance(exc, RunFailed):
            reason = str(exc)
        else:
            reason = f"stopped by {exc.args[0]}" if exc.args else "interrupted by the user"
        with _stop_signals_held():
            federation.close()
            if records:
                mark_failed(Path(plan.config.output), reason)
        raise
    finally:
        federation.close()
        if plan.lock is not None:
            plan.lock.close()  # the output is free for another run
