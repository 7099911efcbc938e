"""Processes forked from an interpreter that has imported their modules (federates/forked.py):
exit codes, output, process title and signals behave as for `python -m MODULE`."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from federates.forked import ForkedProcess, python_module


def _fork(argv: list[str], out: Path, err: Path) -> ForkedProcess:
    with open(out, "w") as o, open(err, "w") as e, open(os.devnull) as devnull:
        return ForkedProcess(argv, devnull.fileno(), o.fileno(), e.fileno())


def test_output_and_exit_codes_are_those_of_the_module(tmp_path):
    ok = _fork([sys.executable, "-m", "timeit", "-n", "1", "-r", "1", "pass"], tmp_path / "o1", tmp_path / "e1")
    assert ok.wait(timeout=30) == 0
    assert "1 loop, best of 1" in (tmp_path / "o1").read_text()

    # tandem.sweep_cases.main() returns 2 with a usage line when given one argument
    bad = _fork([sys.executable, "-m", "tandem.sweep_cases", "only-one"], tmp_path / "o2", tmp_path / "e2")
    assert bad.wait(timeout=30) == 2
    assert "usage: python -m tandem.sweep_cases" in (tmp_path / "e2").read_text()

    crash = _fork([sys.executable, "-m", "timeit", "-n", "1", "-r", "1", "1 / 0"], tmp_path / "o3", tmp_path / "e3")
    assert crash.wait(timeout=30) == 1
    assert "ZeroDivisionError" in (tmp_path / "e3").read_text()


def test_the_child_shows_its_command_line_leads_its_session_and_stops_on_a_signal(tmp_path):
    argv = [sys.executable, "-m", "timeit", "-n", "1", "-r", "1", "import time; time.sleep(60)"]
    proc = _fork(argv, tmp_path / "o", tmp_path / "e")
    try:
        deadline = time.monotonic() + 10
        cmdline = ""
        while "timeit" not in cmdline and time.monotonic() < deadline:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            time.sleep(0.02)
        assert f"{sys.executable} -m timeit -n 1 -r 1" in cmdline
        assert os.getsid(proc.pid) == proc.pid
        assert proc.poll() is None
        with pytest.raises(Exception, match="timed out"):
            proc.wait(timeout=0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        proc.kill()


def test_only_python_module_command_lines_are_forked():
    assert python_module([sys.executable, "-m", "federates.recorder", "--config", "x.json"]) == "federates.recorder"
    assert python_module(["helics_broker", "--federates=3"]) is None
    with pytest.raises(ValueError, match="not a `python -m` command line"):
        ForkedProcess(["helics_broker", "--federates=3"], 0, 1, 2)


def test_the_child_keeps_only_its_standard_descriptors_and_its_exit_code_survives_an_ignored_sigchld(tmp_path):
    """Like Popen(close_fds=True): a pipe this process holds is not kept open by the child (its
    reader would wait for the child's end). With SIGCHLD ignored, as some process managers
    leave it, the kernel would reap the child and its exit code be lost."""
    read_end, write_end = os.pipe()
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        argv = [sys.executable, "-m", "timeit", "-n", "1", "-r", "1", "import os; print(sorted(map(int, os.listdir('/proc/self/fd'))))"]
        proc = _fork(argv, tmp_path / "o", tmp_path / "e")
        assert proc.wait(timeout=30) == 0
    finally:
        signal.signal(signal.SIGCHLD, previous)
        os.close(read_end)
        os.close(write_end)
    # 0, 1, 2 and the one os.listdir opens to read the folder
    fds = json.loads((tmp_path / "o").read_text().splitlines()[0])
    assert write_end not in fds and read_end not in fds and len(fds) == 4, fds
