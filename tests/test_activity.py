"""The launcher's reading of /proc (federates.activity): a process that computes is working,
one that waits is not, whatever it started counts with it (per thread), and a stopped one
is seen as stopped. Real processes, each leading its own session as federates do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from federates.activity import BusyWatch, process_stopped, session_cpu_seconds

SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
# A parent that waits while the child it started computes: the session's work is the child's.
PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SPIN!r}])"


def _start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def test_working_sessions_are_told_from_waiting_and_stopped_ones():
    procs = {"spins": _start(SPIN), "sleeps": _start("import time; time.sleep(30)"), "parent": _start(PARENT)}
    try:
        # A low share: on a loaded machine the spinners may get a fraction of a core each.
        watch = BusyWatch({p.pid for p in procs.values()}, every=0.1, window=2.0, share=0.05)
        assert watch.working() == []  # nothing seen yet: no claim either way
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            watch.sample()
            time.sleep(0.05)
        assert set(watch.working()) == {procs["spins"].pid, procs["parent"].pid}
        used = session_cpu_seconds({procs["spins"].pid, procs["sleeps"].pid})
        assert used[procs["spins"].pid] > 1.0 and used[procs["sleeps"].pid] < 0.5, used

        assert not process_stopped(procs["spins"].pid)
        procs["spins"].send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        assert process_stopped(procs["spins"].pid)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:  # stopped, it uses no CPU: no longer working
            watch.sample()
            time.sleep(0.05)
        assert procs["spins"].pid not in watch.working()
    finally:
        for p in procs.values():  # the whole session: the parent's child too
            os.killpg(p.pid, signal.SIGCONT)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert not process_stopped(procs["spins"].pid)  # gone: not stopped
