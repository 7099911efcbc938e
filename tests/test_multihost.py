"""A run split over two hosts: two network namespaces joined by a veth pair stand for two
machines. Host A runs the broker, the transmission federate and the recorder, host B the
feeder federates; each is its own `tandem run --federates ...` of the same scenario."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from results.store import RunFile
from tests.conftest import ROOT, processes_mentioning, rows_written, tandem
from tests.netns import Hosts, two_hosts

SCENARIO = """\
name: two_hosts
transmission: {network: case30, load_profile: system}
feeders:
  - {name: ieee13_at_6, model: ieee13, bus: 6, multiplier: match_bus_load, bus_load: replace, load_profile: commercial}
  - {name: ieee13_at_29, model: ieee13, bus: 29, multiplier: 2.0, bus_load: add, load_profile: residential}
time: {start: "2024-01-15T14:00:00", duration: 2h, step: 5min}
coupling: {mode: loose}
federation: {feeder_processes: 2, timeout_s: TIMEOUT}
"""
PORT = "23500"  # each pair of namespaces has its own ports: no clash with other runs
HOST_A = ["broker", "transmission", "recorder"]
HOST_B = ["feeders_0", "feeders_1"]
COMPARED = [
    "boundary/p_mw", "boundary/q_mvar", "boundary/vm_pu", "boundary/va_deg",
    "transmission/vm_pu", "transmission/va_deg", "transmission/loading_percent",
    "feeders/p_total_kw", "feeders/q_total_kvar", "feeders/p_kw", "feeders/q_kvar",
    "feeders/vmin_pu", "feeders/vmax_pu", "feeders/losses_kw",
    "feeders/node_vm_pu/ieee13_at_6", "feeders/node_vm_pu/ieee13_at_29", "coupling/mismatch_pu",
]


@pytest.fixture(scope="module")
def hosts():
    with two_hosts(f"tdm{os.getpid() % 100000}") as made:
        yield made


def _scenario(tmp_path: Path, timeout_s: float = 60) -> Path:
    path = tmp_path / "two_hosts.yaml"
    path.write_text(SCENARIO.replace("TIMEOUT", str(timeout_s)))
    return path


def _start(ns: str, *args: str) -> subprocess.Popen:
    """`tandem run` on one 'host'."""
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tandem.cli", "run", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=ROOT,
    )


def _part(hosts: Hosts, ns: str, scenario: Path, output: Path, federates: list[str], *extra: str) -> subprocess.Popen:
    return _start(ns, str(scenario), "-o", str(output), "-q", "--federates", ",".join(federates),
                  "--broker-address", hosts.addr_a, "--broker-port", PORT, *extra)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_run_split_over_two_hosts_equals_the_single_host_run(hosts, tmp_path):
    scenario = _scenario(tmp_path)
    single = tmp_path / "single.h5"
    proc = tandem("run", str(scenario), "-o", str(single), "-q")
    assert proc.returncode == 0, proc.stderr

    split = tmp_path / "split.h5"
    # The feeders' host starts first: its federates wait for the broker (up to timeout_s).
    part_b = _part(hosts, hosts.b, scenario, split, HOST_B, "--local-interface", hosts.addr_b)
    time.sleep(2)
    part_a = _part(hosts, hosts.a, scenario, split, HOST_A)
    code_a, err_a = _finish(part_a)
    code_b, err_b = _finish(part_b)
    assert (code_a, code_b) == (0, 0), err_a + err_b

    run_dir = tmp_path / "split_run"
    assert sorted(p.name for p in run_dir.glob("federation*.json")) == ["federation_broker.json", "federation_feeders_0.json"]
    assert sorted(p.stem for p in (run_dir / "logs").glob("*.log")) == sorted(HOST_A + HOST_B)
    with RunFile(single) as one, RunFile(split) as two:
        assert two.complete and one.complete
        for name in COMPARED:
            a, b = one.read(name), two.read(name)
            assert a.shape == b.shape and a.shape[0] == 24, name
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-9, err_msg=name)
    assert not processes_mentioning(str(run_dir)), "processes left behind"
    assert not hosts.pids(), "processes left in the namespaces"


def test_unreachable_broker_fails_within_the_timeout_with_one_line(hosts, tmp_path):
    scenario = _scenario(tmp_path, timeout_s=10)
    started = time.monotonic()
    # 10.200.0.9 is on host B's link but nobody has it.
    proc = _start(hosts.b, str(scenario), "-o", str(tmp_path / "lonely.h5"), "-q", "--federates", "feeders_0,feeders_1",
                  "--broker-address", "10.200.0.9", "--broker-port", PORT)
    code, err = _finish(proc)
    elapsed = time.monotonic() - started
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    # Both feeder federates fail alike; the one that started first is named.
    # HELICS's own retries (about 6 x timeout_s) or the launcher's probe of the broker's port
    # (2 x timeout_s + 30 s), whichever gives up first.
    assert re.match(r"error: (federate 'feeders_[01]' failed: cannot reach the HELICS broker at 10\.200\.0\.9:23500 \(zmq\) "
                    r"after \d+ s of trying \(timeout_s=10\): |the HELICS broker at 10\.200\.0\.9:23500 has not answered for \d+ s)", lines[0]), err
    # Start-up included; HELICS tries about six times, 60 s at timeout_s = 10.
    assert elapsed < 60 + 35, f"took {elapsed:.0f} s"
    assert not hosts.pids()


def test_losing_the_broker_host_mid_run_stops_the_other_host(hosts, tmp_path):
    scenario = _scenario(tmp_path, timeout_s=5)
    output = tmp_path / "lost.h5"
    longer = ("--duration", "7d")  # still running when host A goes away, even on an idle machine
    part_a = _part(hosts, hosts.a, scenario, output, HOST_A, *longer)
    part_b = _part(hosts, hosts.b, scenario, output, HOST_B, *longer)
    deadline = time.monotonic() + 120
    while rows_written(output) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert 3 <= rows_written(output) < 2016, "the split run is not in the middle of its steps"
    # Host A goes away: its launcher dies, its children follow it (PR_SET_PDEATHSIG).
    os.kill(part_a.pid, signal.SIGKILL)
    part_a.wait(timeout=30)
    lost_at = time.monotonic()
    code, err = _finish(part_b, timeout=200)
    waited = time.monotonic() - lost_at
    assert code == 1
    assert re.fullmatch(r"error: federate 'feeders_[01]' stopped: federation stopped \(\[-101\] core lost connection with broker\)", err.strip()), err
    assert waited < 30, f"noticed after {waited:.0f} s"
    time.sleep(1)
    assert not processes_mentioning(str(tmp_path / "lost_run")), "processes left behind"
    assert not hosts.pids()


def _connections(ns: str, address: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htn", "state", "established", "dst", address],
                         capture_output=True, text=True, timeout=30).stdout
    return len(out.splitlines())


def test_broker_lost_before_the_first_step_is_noticed_through_its_port(hosts, tmp_path):
    """Federates still waiting to enter initialization never learn that the broker is gone
    (HELICS 3.6); the launcher of a part without the broker watches the broker's port."""
    timeout_s = 3
    scenario = _scenario(tmp_path, timeout_s=timeout_s)
    output = tmp_path / "early.h5"
    part_a = _part(hosts, hosts.a, scenario, output, ["broker"])  # transmission and recorder never come
    part_b = _part(hosts, hosts.b, scenario, output, HOST_B)
    deadline = time.monotonic() + 120
    while _connections(hosts.b, f"{hosts.addr_a}:{PORT}") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _connections(hosts.b, f"{hosts.addr_a}:{PORT}") >= 2, "the feeder federates did not connect"
    os.kill(part_a.pid, signal.SIGKILL)
    part_a.wait(timeout=30)
    lost_at = time.monotonic()
    code, err = _finish(part_b, timeout=200)
    waited = time.monotonic() - lost_at
    assert code == 1
    line = err.strip()
    assert line.startswith(f"error: the HELICS broker at {hosts.addr_a}:{PORT} has not answered for "), err
    assert line.endswith(f"s (timeout_s={timeout_s}); started elsewhere: broker, transmission, recorder"), err
    assert 2 * timeout_s + 30 - 1 < waited < 2 * timeout_s + 30 + 15, f"noticed after {waited:.0f} s"
    time.sleep(1)
    assert not processes_mentioning(str(tmp_path / "early_run")), "processes left behind"
    assert not hosts.pids()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--federates", "feeders_0"], "federation.broker_port: starting only some processes (--federates) needs a fixed port"),
        (["--federates", "feeders_0", "--broker-port", PORT, "--feeder-processes", "auto"],
         "federation.feeder_processes: starting only some processes (--federates) needs a number"),
        (["--federates", "broker,feeders_2", "--broker-port", PORT],
         "--federates: this run has no process 'feeders_2'; it has broker, transmission, feeders_0, feeders_1, recorder"),
        (["--federates", "recorder,recorder", "--broker-port", PORT], "--federates: a process is named twice"),
    ],
)
def test_split_needs_a_plan_that_is_the_same_on_every_host(tmp_path, extra, expected):
    proc = tandem("run", str(_scenario(tmp_path)), "-o", str(tmp_path / "x.h5"), *extra)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {expected}" or proc.stderr.strip().startswith(f"error: {expected}"), proc.stderr
    assert not (tmp_path / "x_run").exists(), "nothing is written for bad input"
