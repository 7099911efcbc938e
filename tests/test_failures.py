"""Bad input and broken runs: clear one-line errors, non-zero exits, nothing left
running, and whatever was computed before the failure kept readable."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from results.store import RunFile
from tests.conftest import ROOT, SMALL, helics_app, processes_mentioning, rows_written, run_processes, tandem


def _scenario_file(tmp_path: Path, **changes) -> Path:
    """The small scenario with some keys replaced (dotted paths; feeders.N.key for a feeder)."""
    data = yaml.safe_load(SMALL.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[leaf] = value
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"feeders__0__colour": "red"}, "feeders.0.colour: unknown key"),
        ({"coupling__max_iterations": "many"}, "coupling.max_iterations"),
        ({"time__step": 300}, "time.step: give a duration with units"),
        ({"time__duration": "7h", "time__step": "2h"}, "not a whole number of steps"),
        ({"feeders__1__bus": 9999}, "feeders.1.bus: unknown bus 9999"),
        ({"feeders__1__bus": "no-such-bus"}, "feeders.1.bus: unknown bus 'no-such-bus'"),
        ({"feeders__0__model": "missing_feeder.dss"}, "feeders.0.model: OpenDSS master file not found"),
        ({"feeders__0__model": "ieee999"}, "unknown feeder model 'ieee999'"),
        ({"transmission__network": "case999"}, "unknown network 'case999'"),
        ({"transmission__network": "nowhere.json"}, "transmission.network: file not found"),
        ({"feeders__2__load_profile": "lunar"}, "unknown load profile 'lunar'"),
        ({"coupling__tolerance_pu": -1}, "coupling.tolerance_pu"),
        ({"feeders__2__multiplier": 0.0}, "multiplier must be a positive finite number"),
        ({"feeders__2__multiplier": float("inf")}, "multiplier must be a positive finite number"),
        ({"time__step": "300"}, "time.step: give a duration with units"),
        ({"feeders__1__bus": True}, "feeders.1.bus: bus must be a bus index or name"),
        ({"feeders__0__name": "a/b"}, "feeder names may hold letters"),
        ({"coupling__max_iterations": 1}, "coupling.max_iterations"),
        ({"feeders__2__bus": "7"}, "feeders.2.bus_load: 'add' but feeders.0 at the same bus 6 says 'replace'"),
        ({"transmission__network": "broken.json"}, "transmission.network: cannot load"),
        ({"feeders__0__load_profile": {"file": "x.csv", "tz": "Mars/Olympus"}}, "feeders.0.load_profile.tz: unknown time zone 'Mars/Olympus'"),
        ({"feeders__0__load_profile": {"fil": "x.csv"}}, "feeders.0.load_profile.fil: unknown key"),
    ],
)
def test_bad_scenarios_are_rejected_before_anything_starts(tmp_path, changes, expected):
    (tmp_path / "broken.json").write_text('{"not": "a pandapower network"}')
    path = _scenario_file(tmp_path, **changes)
    out = tmp_path / "out.h5"
    proc = tandem("run", str(path), "-o", str(out), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert not out.exists() and not (tmp_path / "out_run").exists(), "a rejected scenario must start nothing"


def test_missing_scenario_file(tmp_path):
    proc = tandem("run", str(tmp_path / "nope.yaml"), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: scenario file not found: {tmp_path / 'nope.yaml'}"


def test_broken_feeder_model_names_the_feeder_and_file(tmp_path):
    bad = tmp_path / "broken.dss"
    bad.write_text("New Circuit.broken basekv=12.47 phases=3\nNew Frobnicator.x bus1=sourcebus\n")
    path = _scenario_file(tmp_path, feeders__2__model=str(bad))
    out = tmp_path / "out.h5"
    proc = tandem("run", str(path), "--duration", "1h", "-o", str(out), timeout=120)
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: federate 'feeders_0' failed: feeder ieee13_at_29: cannot compile")
    assert str(bad) in message
    assert not run_processes(tmp_path / "out_run")
    with RunFile(out) as run:  # a start-up failure leaves a file that opens, with the error
        assert not run.complete and "cannot compile" in run.error and run.n_steps == 0


def test_non_convergent_transmission_power_flow(tmp_path):
    path = _scenario_file(tmp_path, feeders__2__multiplier=30000.0)
    out = tmp_path / "out.h5"
    proc = tandem("run", str(path), "--duration", "1h", "-o", str(out), timeout=120)
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    assert "federate 'transmission' failed: transmission power flow did not converge at step 0" in message
    assert not run_processes(tmp_path / "out_run")
    with RunFile(out) as run:
        assert not run.complete and "did not converge" in run.error and run.n_steps == 0


HUNTING_FEEDER = """
New Circuit.hunting basekv=12.47 pu=1.0 phases=3 bus1=sourcebus
New Line.feeder phases=3 bus1=sourcebus bus2=loadbus r1=0.5 x1=1.0 r0=1.5 x0=3.0 length=2 units=km
New Load.load phases=3 bus1=loadbus kV=12.47 kW=3000 kvar=1500 model=1
New Capacitor.cap phases=3 bus1=loadbus kV=12.47 kvar=1500
! Switched on below 9000 V and off above 5000 V (the bus is near 7000 V either way): it never settles.
New CapControl.hunting Capacitor=cap Element=Line.feeder Terminal=2 type=voltage PTratio=1 ON=9000 OFF=5000 Delay=0 DelayOFF=0
Set voltagebases=[12.47]
Calcvoltagebases
"""


def test_feeder_whose_controls_never_settle_names_the_feeder_and_step(tmp_path):
    model = tmp_path / "hunting.dss"
    model.write_text(HUNTING_FEEDER)
    path = _scenario_file(tmp_path, feeders__2__model=str(model), feeders__2__name="hunting")
    out = tmp_path / "out.h5"
    proc = tandem("run", str(path), "--duration", "1h", "-o", str(out), timeout=120)
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: federate 'feeders_0' failed: feeder hunting: OpenDSS could not solve at step 0 ("), message
    assert message.endswith("Max Control Iterations Exceeded."), message
    assert not run_processes(tmp_path / "out_run")
    with RunFile(out) as run:
        assert not run.complete and "feeder hunting" in run.error


def test_a_failure_mid_run_keeps_every_step_computed_before_it(tmp_path):
    """A feeder whose load jumps 50-fold around 14:50 cannot solve that step: the run fails
    there, and the file holds every step before it. The recorder lags behind the others (its values
    queue in HELICS); before the failing federate waited for it, the global error ended it
    first, and most of those steps were lost (1 to 7 of 10 recorded, measured under load)."""
    profile = tmp_path / "spike.csv"
    start = np.datetime64("2024-01-15T14:00")
    levels = np.full(24, 0.8)
    levels[10] = 40.0
    profile.write_text("timestamp,pu\n" + "".join(f"{start + np.timedelta64(5 * i, 'm')}:00,{v}\n" for i, v in enumerate(levels)))
    path = _scenario_file(tmp_path, time__duration="2h", coupling={"mode": "loose"},
                          feeders__0__load_profile={"file": str(profile), "units": "pu"})
    out = tmp_path / "out.h5"
    proc = tandem("run", str(path), "-q", "-o", str(out), timeout=180)
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    found = re.search(r"feeder ieee13_at_6: OpenDSS power flow did not converge at step (\d+) ", message)
    assert found, message
    failed = int(found.group(1))  # before step 10: each load's copy of the profile is shifted a little
    assert failed >= 3, message
    assert not run_processes(tmp_path / "out_run")
    with RunFile(out) as run:
        assert not run.complete and run.n_steps == failed, f"{run.n_steps} of the {failed} steps before the failure recorded"
        np.testing.assert_array_equal(run.read("time/seconds"), np.arange(failed) * 300.0)
        assert np.isfinite(run.read("boundary/p_mw")).all()


@contextmanager
def _tmpfs(path: Path, options: str):
    """A real tmpfs mounted at `path` (skips where the machine does not let this user mount one)."""
    path.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command to make a small file system with")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); needs root or CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_output_folder_is_refused_before_anything_starts(tmp_path):
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        out = folder / "sub" / "out.h5"
        proc = tandem("run", str(SMALL), "-o", str(out), timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == f"error: cannot write {out}: Read-only file system"
        assert not list(folder.iterdir())


def test_full_disk_names_the_file_and_keeps_the_rows_written(tmp_path):
    """The results fill a 1 MB tmpfs mid-run: one line naming the file and the cause, and
    every row written before it stays readable."""
    with _tmpfs(tmp_path / "full", "size=1m") as folder:
        out = folder / "out.h5"
        proc = tandem("run", str(SMALL), "--coupling", "loose", "--duration", "2d", "-q", "-o", str(out), timeout=180)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == f"error: federate 'recorder' failed: cannot write {out}: No space left on device"
        assert not run_processes(folder / "out_run"), "processes left behind"
        assert 0 < assert_committed_rows_intact(out) < 576


def _wait_for_rows(path: Path, rows: int, proc: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        seen = rows_written(path)
        if seen >= rows:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{path} never reached {rows} rows")


def _start_small_run(out: Path, *args: str) -> subprocess.Popen:
    """The small scenario, loosely coupled over 2 days (576 steps), as a running `tandem run`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "run", str(SMALL), "--coupling", "loose", "--duration", "2d", *args, "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )


def test_killed_federate_ends_the_run_cleanly(tmp_path):
    out = tmp_path / "killed.h5"
    run_dir = tmp_path / "killed_run"
    proc = _start_small_run(out, "--feeder-processes", "2")
    try:
        seen = _wait_for_rows(out, 5, proc)
        victims = [line for line in processes_mentioning(str(run_dir)) if "federates.feeders" in line and "--group 1" in line]
        assert len(victims) == 1, victims
        os.kill(int(victims[0].split(":")[0]), signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        assert time.monotonic() - killed_at < 10, "the run must end within 10 s of a federate dying"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    message = stderr.strip().splitlines()[-1]
    assert "federate 'feeders_1'" in message and "killed by SIGKILL" in message, message
    assert not run_processes(run_dir), "processes left behind"
    with RunFile(out) as run:
        assert not run.complete
        assert "feeders_1" in run.error
        assert seen <= run.n_steps < 576
        seconds = run.read("time/seconds")
        np.testing.assert_array_equal(seconds, np.arange(run.n_steps) * 300.0)
        assert np.all(run.read("feeders/p_total_kw") > 0), "every written row must be a complete step"


def test_a_stopped_federate_is_named_and_a_stalled_one_shows_its_stack(tmp_path):
    """A federate that stops answering without dying (SIGSTOP here) stalls the federation, or
    HELICS reports lost contact with it: either way the launcher names the stopped process; and any
    federate, asked with STACK_SIGNAL (as the launcher asks all of a stalled federation),
    writes where it waits into its log and goes on."""
    from federates.base import STACK_SIGNAL

    scenario = tmp_path / "small.yaml"
    scenario.write_text(SMALL.read_text() + "\nfederation: {timeout_s: 2}\n")  # stall noticed after 2 * 2 + 30 s
    out, run_dir = tmp_path / "stopped.h5", tmp_path / "stopped_run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "run", str(scenario), "--coupling", "loose", "--duration", "20d", "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    victim = None
    try:
        _wait_for_rows(out, 3, proc)
        pids = {kind: int(line.split(":")[0]) for line in processes_mentioning(str(run_dir))
                for kind in ("transmission", "feeders") if f"federates.{kind}" in line}
        os.kill(pids["transmission"], STACK_SIGNAL)
        seen = _wait_for_rows(out, rows_written(out) + 3, proc)  # it goes on
        victim = pids["feeders"]
        os.kill(victim, signal.SIGSTOP)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if victim is not None:
            try:
                os.kill(victim, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    message = stderr.strip().splitlines()[-1]
    # Named whichever notices first: HELICS (the others lose contact with its core, timeout_s=2)
    # or the launcher's stall check.
    assert message.startswith(f"error: federate 'feeders_0' (pid {victim}) is stopped (SIGSTOP?)"), message
    log = (run_dir / "logs" / "transmission.log").read_text()
    assert "most recent call first" in log and "federates/transmission.py" in log, log[-2000:]
    assert not run_processes(run_dir), "processes left behind"
    with RunFile(out) as run:
        assert not run.complete and run.n_steps >= seen


def test_sigterm_to_every_process_at_once_keeps_a_readable_file(tmp_path):
    """As Slurm's scancel or time limit does: the launcher and every federate get SIGTERM at
    once (and the launcher SIGINT from a sweep's case runner), and the recorder gets it again
    from its stopping launcher. The cleanup runs to its end and the file is closed whole."""
    out = tmp_path / "stopped.h5"
    run_dir = tmp_path / "stopped_run"
    proc = _start_small_run(out, "--checkpoint-every", "1h")
    try:
        seen = _wait_for_rows(out, 30, proc)
        pids = [int(line.split(":")[0]) for line in run_processes(run_dir) if "federates." in line]
        assert len(pids) == 3, run_processes(run_dir)
        for pid in [proc.pid, *pids]:
            os.kill(pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGINT)  # as a sweep's case runner adds when Slurm cancels the case
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Which the launcher acts on first, its SIGTERM, its SIGINT or a federate stopped by SIGTERM,
    # is a race; whichever it is, the others must not cut the cleanup short.
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and "race condition" not in stderr, stderr
    reasons = {"stopped by SIGTERM": "stopped by SIGTERM", "the run was stopped": "interrupted by the user"}
    if proc.returncode == 130:
        shown = lines[-2].removeprefix("interrupted: ").removesuffix("; partial results were kept")
        assert shown in reasons, stderr
        error = reasons[shown]
    else:
        assert proc.returncode == 1 and "SIGTERM" in lines[-2], stderr
        error = lines[-2].removeprefix("error: ")
    assert lines[-1].startswith("the last checkpoint is after step ") and "tandem run --resume" in lines[-1]
    assert not run_processes(run_dir), "processes left behind"
    with RunFile(out) as run:
        assert not run.complete and run.error == error
        assert seen <= run.n_steps < 576
        unreadable = []
        run.file.visititems(lambda name, obj: unreadable.append(name) if isinstance(obj, h5py.Dataset) and not _readable(obj) else None)
        assert unreadable == []
        np.testing.assert_array_equal(run.read("time/seconds"), np.arange(run.n_steps) * 300.0)


def _readable(dataset) -> bool:
    try:
        dataset[()]
        return True
    except OSError:
        return False


def test_two_runs_at_once_both_complete(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tandem.cli", "run", "--duration", "1h", "-q", "-o", str(tmp_path / f"r{i}.h5")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    for i in range(2):
        assert not run_processes(tmp_path / f"r{i}_run"), "processes left behind"
    ports = set()
    for i in range(2):
        with RunFile(tmp_path / f"r{i}.h5") as run:
            assert run.complete and run.n_steps == 12
            assert len(run.read("feeders/name")) == 8
        config = (tmp_path / f"r{i}_run" / "federation.json").read_text()
        ports.add(__import__("json").loads(config)["broker"]["port"])
    assert len(ports) == 2, "each run needs its own broker port"


def test_ports_near_the_broker_port_taken_by_others_do_not_fail_the_run(tmp_path):
    """A busy machine's other processes may hold ports just above the broker's, where a zmq broker
    would place its federates (broker_port + 5, + 6, ...): each federate's port is chosen free instead."""
    port = _free_port()
    squatters = []
    for k in range(2, 12):  # the broker itself binds port and port + 1
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port + k))
            s.listen()
            squatters.append(s)
        except OSError:
            s.close()
    try:
        out = tmp_path / "near.h5"
        result = subprocess.run(
            [sys.executable, "-m", "tandem.cli", "run", "--duration", "30min", "-q", "--broker-port", str(port), "-o", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        )
    finally:
        for s in squatters:
            s.close()
    assert len(squatters) >= 8
    assert result.returncode == 0, result.stderr
    with RunFile(out) as run:
        assert run.complete and run.n_steps == 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_helics_recorder_observer_sees_the_boundary_values(tmp_path):
    """`--observers 1` lets a real helics_recorder join the run's broker."""
    port = _free_port()
    out = tmp_path / "observed.h5"
    run = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "run", str(SMALL), "--coupling", "loose", "--duration", "1h",
         "--observers", "1", "--broker-port", str(port), "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    spec = tmp_path / "observer.txt"
    spec.write_text("subscription transmission/boundary/6/voltage\nsubscription feeder/ieee13_at_6/power\n")
    capture = tmp_path / "captured.txt"
    observer = subprocess.run(
        [helics_app("helics_recorder"), str(spec), "--name", "observer", "--coretype", "zmq", "--brokerport", str(port),
         "--stop", "3700s", "-o", str(capture), "--loglevel", "warning"],
        capture_output=True, text=True, timeout=120,
    )
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert observer.returncode == 0, observer.stderr
    assert not run_processes(tmp_path / "observed_run"), "processes left behind"
    captured: dict[str, dict[float, list[float]]] = {}
    for line in capture.read_text().splitlines():
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        stamp, key, value = float(parts[0]), parts[2] if parts[1] == "" else parts[1], parts[-1]
        captured.setdefault(key.strip(), {})[stamp] = [float(v) for v in value.strip('"[]').split(",")]
    with RunFile(out) as result:
        bus = list(result.read("boundary/bus")).index(6)
        feeder = list(result.read("feeders/name")).index("ieee13_at_6")
        vm, va = result.read("boundary/vm_pu")[:, bus], result.read("boundary/va_deg")[:, bus]
        p = result.read("feeders/p_kw")[:, feeder]
    for k in range(12):  # step k is HELICS time (k + 1) * 300 s
        real, imag = captured["transmission/boundary/6/voltage"][(k + 1) * 300.0]
        assert complex(real, imag) == pytest.approx(vm[k] * np.exp(1j * np.deg2rad(va[k])), rel=1e-12)
        assert captured["feeder/ieee13_at_6/power"][(k + 1) * 300.0][:3] == pytest.approx(list(p[k]), rel=1e-12)

    # Replaying its runner.json neither hangs waiting for the observer nor writes over the run.
    original = out.read_bytes()
    runner = tmp_path / "observed_run" / "runner.json"
    try:
        replay = _replay(runner, tmp_path)
        assert out.read_bytes() == original, "the replay wrote over the run it replays"
        assert f"{out} exists" in (tmp_path / "observed_run" / "logs" / "recorder.log").read_text() + replay.stdout + replay.stderr
        assert not run_processes(tmp_path / "observed_run"), "processes left behind"
        out.rename(tmp_path / "kept.h5")
        replay = _replay(runner, tmp_path)  # with the results moved away, it runs (without observers)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert not run_processes(tmp_path / "observed_run"), "processes left behind"
    finally:
        for line in run_processes(tmp_path / "observed_run"):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    with RunFile(out) as replayed:
        assert replayed.complete and replayed.n_steps == 12
        np.testing.assert_array_equal(replayed.read("boundary/vm_pu")[:, bus], vm)


def _replay(runner: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([helics_app("helics"), "run", "--path", str(runner), "--no-log-files"],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_runner_file_replays_the_federation_with_helics_run(tmp_path):
    out = tmp_path / "first.h5"
    proc = tandem("run", str(SMALL), "--duration", "30min", "-o", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    with RunFile(out) as run:
        first = run.read("boundary/vm_pu")
    out.unlink()
    runner = tmp_path / "first_run" / "runner.json"
    replay = subprocess.run(
        [helics_app("helics"), "run", "--path", str(runner), "--no-log-files"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert not run_processes(tmp_path / "first_run"), "processes left behind"
    with RunFile(out) as run:
        assert run.complete
        np.testing.assert_allclose(run.read("boundary/vm_pu"), first, rtol=1e-12)


# The fault matrix: every kind of process, the launcher and the whole process tree killed by
# SIGKILL at start-up (the results file made, no step yet) and mid-run while checkpoints are
# written (one after every step, so the kill lands in one or between two); the recorder and the
# whole tree also mid-run without checkpoints (rows only), the other victims' kills there act
# as with checkpoints. Whatever happens, the file opens and every row it counts is whole; a
# checkpoint it holds can be read back, and resumed from after the whole tree was killed.
FAULT_VICTIMS = ("transmission", "feeders", "coordinator", "recorder", "broker", "launcher", "tree")
FAULTS = [(v, m) for v in FAULT_VICTIMS for m in ("start-up", "checkpoint")] + [("recorder", "mid-run"), ("tree", "mid-run")]
ORPHAN_SECONDS = 8.0  # for the processes of a run whose launcher died to be gone (federates.base.watch_parent)


def _run_args(victim: str, moment: str) -> list[str]:
    if victim == "coordinator":  # the small scenario does not coordinate
        args = [str(ROOT / "runs" / "pv_centralized.yaml"), "--duration", "2h"]
    else:
        args = [str(SMALL), "--coupling", "loose", "--duration", "12h"]
    return args + (["--checkpoint-every", "5min"] if moment == "checkpoint" else [])


def _kill_at(moment: str, out: Path, proc: subprocess.Popen, victim: str) -> list[int]:
    """Wait for the moment, then SIGKILL the victim(s); returns the pids killed."""
    run_dir = out.with_name(out.stem + "_run")
    log = run_dir / "logs" / "recorder.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if moment == "start-up":
            ready = out.exists()
        elif moment == "mid-run":
            ready = rows_written(out) >= 3
        else:
            ready = log.exists() and "checkpoint after step 2 written" in log.read_text()
        try:
            lines = run_processes(run_dir)
        except (OSError, ValueError):  # federation.json not written yet, or being written
            lines = []
        if victim == "launcher":
            pids = [proc.pid]
        elif victim == "tree":
            pids = [proc.pid, *(int(line.split(":")[0]) for line in lines)]
        elif victim == "broker":
            pids = [int(line.split(":")[0]) for line in lines if "helics_broker" in line]
        else:
            pids = [int(line.split(":")[0]) for line in lines if f"federates.{victim}" in line][:1]
        if ready and pids:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            return pids
        time.sleep(0.01)
    raise AssertionError(f"the run never reached {moment}")


def assert_committed_rows_intact(path: Path, step_seconds: float = 300.0) -> int:
    """The file opens, every dataset reads, `time/seconds` counts whole steps and each counted
    row is written in every time series; a checkpoint is readable. Returns the rows."""
    from results.checkpoint import checkpoint_step, read_checkpoint

    with RunFile(path) as run:
        n = run.n_steps
        np.testing.assert_array_equal(run.read("time/seconds"), np.arange(n) * step_seconds)
        unreadable = []
        run.file.visititems(lambda name, obj: unreadable.append(name) if isinstance(obj, h5py.Dataset) and not _readable(obj) else None)
        assert unreadable == []
        for name in run.names():
            assert run.file[name].shape[0] >= n, f"{name} lacks rows time/seconds counts"
        if run.has("feeders/p_total_kw"):  # a row not written reads as HDF5's fill value, 0
            assert np.all(run.read("feeders/p_total_kw") != 0), "every counted row must be a complete step"
        step = checkpoint_step(run.file)
        complete = run.complete
    if step is not None and not complete:
        assert read_checkpoint(path).rows == step + 1 <= n
    return n


@pytest.mark.parametrize("victim, moment", FAULTS)
def test_fault_matrix(tmp_path, victim, moment):
    out = tmp_path / "fault.h5"
    run_dir = tmp_path / "fault_run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "run", *_run_args(victim, moment), "-q", "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        _kill_at(moment, out, proc, victim)
        killed_at = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        if victim in ("launcher", "tree"):
            # Orphaned federates notice their launcher is gone and exit within seconds.
            while run_processes(run_dir) and time.monotonic() - killed_at < ORPHAN_SECONDS:
                time.sleep(0.1)
        assert not run_processes(run_dir), f"processes left behind: {run_processes(run_dir)}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for line in run_processes(run_dir):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    if victim not in ("launcher", "tree"):
        assert proc.returncode == 1, stderr
        errors = [line for line in stderr.strip().splitlines() if not line.startswith("warning: ")]  # warnings come first
        assert errors[0].startswith("error: ") and "Traceback" not in stderr, stderr
        assert (victim if victim != "feeders" else "feeders_0") in errors[0], stderr
    rows = assert_committed_rows_intact(out)
    counted = re.search(r"\((\d+) of \d+ steps recorded\)", stderr)
    if counted:  # the message counts what the file holds, not what the recorder had reported by then
        assert int(counted.group(1)) == rows, stderr
    if victim not in ("launcher", "tree"):
        with RunFile(out) as run:
            assert not run.complete and run.error, "the file must say why the run failed"
    if moment == "checkpoint" and victim == "tree":  # a run killed whole during a checkpoint resumes
        # ... but not while another run holds the run folder: a --resume then refuses before it
        # cuts the file back to its checkpoint (the holder here stands for a resume still going).
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            refused = tandem("run", "--resume", str(out), "-q", timeout=120)
        finally:
            holder.kill()
            holder.wait()
        assert refused.returncode == 1 and "is being written by another run" in refused.stderr, refused.stderr
        assert assert_committed_rows_intact(out) == rows
        resumed = tandem("run", "--resume", str(out), "-q", timeout=180)
        assert resumed.returncode == 0, resumed.stderr
        assert assert_committed_rows_intact(out) == 144 >= rows


HOLD_LOCK = """
import fcntl, sys, time
lock = open(sys.argv[1], "a+")
fcntl.flock(lock, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(300)
"""

KILLED_WRITER = """
import json, sys
import numpy as np
from results.store import ResultsWriter, Series
shapes = [(3,), (8,), (30,), (120, 3), (1,), (41,)]
writer = ResultsWriter(sys.argv[1], "{}", "", 10**6, flush_seconds=1e9, block_rows=5)
for i in range(40):
    writer.add_series(Series(f"g{i % 5}/d{i}", shapes[i % 6], "", ("x",) * len(shapes[i % 6]), ""))
writer.add_series(Series("timing/feeders_opendss_s", (1,), "s", ("feeder_process",), ""))  # read_checkpoint reads it
writer.flush()
print("ready", flush=True)
k = 0
while True:
    row = {f"g{i % 5}/d{i}": np.full(shapes[i % 6], k * 1000.0 + i) for i in range(40)}
    writer.append(k * 300.0, {**row, "timing/feeders_opendss_s": np.array([k])})
    if k % 50 == 49:
        writer.checkpoint(k, {"transmission": json.dumps({"k": k, "pad": "x" * (k % 7000)}), "feeders": "{}"})
    k += 1
"""


def test_writer_killed_at_any_moment_keeps_its_rows(tmp_path):
    """The HDF5 layer alone, SIGKILLed at random moments while it writes rows (a flush every 5)
    and checkpoints: every file opens, every row it counts holds exactly what was written, and
    its checkpoint reads. The previous writer failed
    this in 10 of 16 kills."""
    from results.checkpoint import checkpoint_step, read_checkpoint

    chance = np.random.default_rng(14)
    for trial in range(4):
        path = tmp_path / f"killed{trial}.h5"
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(chance.uniform(0.05, 1.2))
        child.kill()
        child.wait()
        with RunFile(path) as run:
            n = run.n_steps
            np.testing.assert_array_equal(run.read("time/seconds"), np.arange(n) * 300.0)
            for i in range(40):
                np.testing.assert_array_equal(run.read(f"g{i % 5}/d{i}")[:n].reshape(n, -1)[:, 0], np.arange(n) * 1000.0 + i)
            step = checkpoint_step(run.file)
        if step is not None:
            checkpoint = read_checkpoint(path)
            assert checkpoint.rows == step + 1 <= n and checkpoint.states["transmission"]["k"] == step


def test_a_new_run_does_not_remove_the_file_another_run_writes(tmp_path):
    """A new run removes an old file of its name itself (its recorder refuses to write over
    one), but never the file of a run that is still writing it."""
    out = tmp_path / "shared.h5"
    first = _start_small_run(out, "-q")
    try:
        _wait_for_rows(out, 3, first)
        # Hold the first run still (its transmission federate stopped, the others wait on it in
        # lockstep) so that it cannot finish while the second one starts on a busy machine.
        held = [int(line.split(":")[0]) for line in run_processes(out.with_name("shared_run")) if "federates.transmission" in line]
        assert len(held) == 1
        os.kill(held[0], signal.SIGSTOP)
        try:
            second = tandem("run", str(SMALL), "--duration", "1h", "-q", "-o", str(out), timeout=120)
        finally:
            os.kill(held[0], signal.SIGCONT)
        assert second.returncode == 1
        message = second.stderr.strip()
        # The run folder's lock refuses first (tests/test_hostile_input.py); the recorder's hold on
        # the file is the second guard, for writers that took no lock (a replayed runner.json).
        assert message.startswith("error: ") and str(out.with_name("shared_run")) in message or str(out) in message, message
        assert "still going" in message or "is being written by another run" in message, message
        _, stderr = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    with RunFile(out) as run:
        assert run.complete and run.n_steps == 576
