"""What the launcher reads from /proc about the processes it started: whether one is stopped,
and whether any is working.

No step recorded for a while means a stalled federation only when nothing computes: a
coordinator building and solving its first plan of a large study (IEEE 118 + 10 IEEE 123 x
96 periods: minutes) blocks the first step as surely as a deadlock does, but it uses a core
while a deadlocked or waiting federate uses next to none. Each federate leads its own
session, so the CPU time of a session covers the federate and everything it started (the
coordinator's DSO worker processes).
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
BUSY_WINDOW_SECONDS = 30.0  # how far back working is judged
BUSY_SHARE = 0.2  # of one core over the window: a solver or power flow uses far more, a waiting federate ~0


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
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(entry.name)
            session = int(fields[3])
            if session in used:
                used[session] += (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return used


class BusyWatch:
    """Samples the CPU time of some sessions (at most every `every` s); `working()` says
    which used at least BUSY_SHARE of a core over about the last `window` s."""

    def __init__(self, sessions: set[int], every: float = 2.0, window: float = BUSY_WINDOW_SECONDS):
        self.sessions = sessions
        self.every = every
        self.window = window
        self.samples: deque[tuple[float, dict[int, float]]] = deque()
        self._next = 0.0

    def sample(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        self.samples.append((now, session_cpu_seconds(self.sessions)))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def working(self) -> list[int]:
        """The sessions that worked over the window (empty until a window has been seen)."""
        if len(self.samples) < 2:
            return []
        (t0, first), (t1, last) = self.samples[0], self.samples[-1]
        if t1 - t0 < self.window / 2:
            return []
        # A session's CPU can only fall when one of its processes ended: that is no work.
        return [s for s in self.sessions if last[s] - first[s] >= BUSY_SHARE * (t1 - t0)]
