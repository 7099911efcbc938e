"""Processes forked from an interpreter that has already imported their modules.

Started as `python -m federates.X`, every federate spends 0.5-2 s of CPU starting Python and
importing numpy, pandas, HELICS and pandapower or OpenDSS before its first step; a run with
many feeder processes, and a sweep running short cases side by side, pay that over and over.
Instead the launcher imports the modules of the federates it starts once (each federate module
lists the ones it imports late in `PRELOAD`) and forks each federate, which then runs what
`python -m federates.X ARGS` would: the module's `main()`. A local sweep does the same one
level up, for its case runners and their `tandem run`. The child takes that command line as
its process title (setproctitle), so `ps`, `pgrep -f` and the `helics` runner file show the
same processes as before.

Nothing may have started HELICS or OpenDSS in the forking process: it only imports their
modules (neither starts a thread or opens a connection at import).
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


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """This process gets `sig` when its parent dies (PR_SET_PDEATHSIG), so none is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))
    except OSError:
        pass


def python_module(argv: list[str]) -> str | None:
    """The module of a `python -m MODULE ...` command line run by this interpreter; else None."""
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m":
        return argv[2]
    return None


def preload(module: str) -> None:
    """Import a module and the modules it imports late (its PRELOAD), here, once."""
    imported = importlib.import_module(module)
    for name in getattr(imported, "PRELOAD", ()):
        importlib.import_module(name)


class ForkedProcess:
    """`python -m MODULE ARGS` (`argv`) run in a child forked from this process; the part of
    subprocess.Popen its users need (pid, returncode, poll, wait, send_signal, kill). The child
    leads its own session and gets `death_signal` when its parent dies, so none is orphaned.

    stdin, stdout, stderr are file descriptors for the child's 0, 1, 2; it keeps no other of
    this process's descriptors (as Popen's close_fds)."""

    def __init__(self, argv: list[str], stdin: int, stdout: int, stderr: int, death_signal: int = signal.SIGTERM):
        module = python_module(argv)
        if module is None:
            raise ValueError(f"not a `python -m` command line: {shlex.join(argv)}")
        self.args = argv
        self.returncode: int | None = None
        if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
            # Inherited from whoever started us: the kernel would reap the child and its exit code be lost.
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _run_child(argv, module, (stdin, stdout, stderr), parent, death_signal)  # never returns
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

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run_child(argv: list[str], module: str, stdio: tuple[int, int, int], parent: int, death_signal: int) -> None:
    """In the forked child: become the process `argv` describes, run it, and exit without
    returning into the parent's code."""
    code = 1
    try:
        os.setsid()
        die_with_parent(death_signal)
        if os.getppid() != parent:  # it died before the death signal was armed
            os._exit(code)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        # Other processes' logs and pipe ends, and whatever this process inherited: a pipe
        # kept open here would withhold its end-of-file from the reader.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        # Fresh stream objects: the parent's may hold locks taken by its other threads.
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, write_through=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        setproctitle(shlex.join(argv))
        sys.argv = [module, *argv[3:]]
        result = importlib.import_module(module).main()
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
