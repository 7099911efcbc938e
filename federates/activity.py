"""What the launcher reads from /proc about the processes it started: whether one is stopped,
and whether any is working.

No step recorded for a while means a stalled federation only when nothing computes: a
coordinator building and solving its first plan of a large study (IEEE 118 + 10 IEEE 123 x
96 periods: minutes) blocks the first step as surely as a deadlock does, but it uses a core
while a deadlocked or waiting federate uses next to none (see BUSY_SHARE for the one exception
and why work is judged per thread). Each federate leads its own session, so a session covers
the federate and everything it started (the coordinator's DSO worker processes).
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
BUSY_WINDOW_SECONDS = 30.0  # how far back working is judged
# Of one core over the window, by one thread: a solver or a power flow runs on one thread near
# 100 %; a federate waiting in HELICS uses next to nothing, except two federates that subscribe
# to each other and both wait on a third (the transmission and the feeders during a long plan):
# their HELICS cores then trade timing messages, about 20-25 % of a core per process spread over
# 4 threads (measured: at most ~11 % in one), which must not count as work. A computing thread
# still gets a quarter of a core with eight runnable threads on two cores.
BUSY_SHARE = 0.25


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_stopped(pid: int) -> bool:
    """Whether the process is stopped (state T: SIGSTOP, a debugger)."""
    try:
        return _stat(pid)[0] in "Tt"
    except (OSError, IndexError):
        return False


def session_cpu_seconds(sessions: set[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by the live processes of each session."""
    used = dict.fromkeys(sessions, 0.0)
    for (session, _), seconds in thread_cpu_seconds(sessions).items():
        used[session] += seconds
    return used


def thread_cpu_seconds(sessions: set[int]) -> dict[tuple[int, int], float]:
    """CPU seconds used so far by every thread (session, thread id) of the live processes of
    each session."""
    out: dict[tuple[int, int], float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            session = int(_stat(entry.name)[3])
            if session not in sessions:
                continue
            for task in os.scandir(f"/proc/{entry.name}/task"):
                fields = _stat(f"{entry.name}/task/{task.name}")
                out[session, int(task.name)] = (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return out


class BusyWatch:
    """Samples the CPU time of the threads of some sessions (at most every `every` s);
    `working()` says which had a thread use at least `share` of a core over about the last
    `window` s (a thread new since the window began counts from zero)."""

    def __init__(self, sessions: set[int], every: float = 2.0, window: float = BUSY_WINDOW_SECONDS,
                 share: float = BUSY_SHARE):
        self.sessions = sessions
        self.share = share
        self.every = every
        self.window = window
        self.samples: deque[tuple[float, dict[tuple[int, int], float]]] = deque()
        self._next = 0.0

    def sample(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        self.samples.append((now, thread_cpu_seconds(self.sessions)))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def working(self) -> list[int]:
        """The sessions that worked over the window (empty until a window has been seen)."""
        if len(self.samples) < 2:
            return []
        (t0, first), (t1, last) = self.samples[0], self.samples[-1]
        if t1 - t0 < self.window / 2:
            return []
        busy = {key[0] for key, seconds in last.items() if seconds - first.get(key, 0.0) >= self.share * (t1 - t0)}
        return [s for s in self.sessions if s in busy]
