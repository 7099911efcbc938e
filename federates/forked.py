"""Federate processes forked from the launcher after it imported their modules once.

Started as `python -m federates.X`, every federate spends 0.5-2 s of CPU starting Python and
importing numpy, pandas, HELICS and pandapower or OpenDSS before its first step; a run with
many feeder processes, and a sweep running cases side by side, pay that for every process.
The launcher imports the modules of the federates it starts (each federate module lists the
ones it imports late in `PRELOAD`) and forks each federate from itself, which then runs exactly
what `python -m federates.X ARGS` would (the module's `main()`). The child takes that command line as its process
title (setproctitle), so `ps`, `pgrep -f` and `helics`-runner users see the same processes.

Nothing in the launcher may have started HELICS or OpenDSS before the fork: it only imports
their modules (neither starts a thread or opens a connection at import).
"""

from __future__ import annotations

import ctypes
import importlib
import io
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback

from setproctitle import setproctitle


def preload(module: str) -> None:
    """Import a federate module and the modules it imports late (its PRELOAD), here, once."""
    federate = importlib.import_module(module)
    for name in getattr(federate, "PRELOAD", ()):
        importlib.import_module(name)


def federate_module(argv: list[str]) -> str | None:
    """The federate module of a `python -m federates.X ...` command line; None for other commands."""
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2].startswith("federates."):
        return argv[2]
    return None


class ForkedFederate:
    """One federate forked from this process; the part of subprocess.Popen the launcher uses
    (pid, returncode, poll, wait, send_signal). The child leads its own session and gets SIGTERM
    when the launcher dies, as the launcher's other processes do.

    stdin, stdout, stderr are file descriptors for the child's 0, 1, 2; `close` lists the
    launcher's descriptors the child must not keep (other federates' logs, pipe ends)."""

    def __init__(self, argv: list[str], stdin: int, stdout: int, stderr: int, close: list[int]):
        module = federate_module(argv)
        if module is None:
            raise ValueError(f"not a federate command line: {shlex.join(argv)}")
        self.args = argv
        self.returncode: int | None = None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(argv, module, stdin, stdout, stderr, close)  # never returns
        self.pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its code is lost
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


def _run_child(argv: list[str], module: str, stdin: int, stdout: int, stderr: int, close: list[int]) -> None:
    """In the forked child: become the federate process `argv` describes, run it, and exit
    without returning into the launcher's code."""
    code = 1
    try:
        os.setsid()
        try:  # PR_SET_PDEATHSIG: SIGTERM when the launcher dies, so no federate is orphaned
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
        except OSError:
            pass
        for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
            os.dup2(fd, target)
        for fd in set(close) - {0, 1, 2}:
            try:
                os.close(fd)
            except OSError:
                pass
        # Fresh stream objects: the launcher's may hold locks taken by its other threads.
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, write_through=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        setproctitle(shlex.join(argv))
        sys.argv = [module, *argv[3:]]
        importlib.import_module(module).main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
