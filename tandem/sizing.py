"""How much memory a run needs at least, estimated before anything starts.

Every feeder process holds each load's profile over the whole run (plus the step labels and
the DERs' daily arrays), so memory grows with steps x loads: `--duration 365d --step 1s`
(31.5 million steps) would need tens of GB and die of memory after a long start-up. The
estimate is a lower bound from the scenario alone (loads counted in the .dss files, no
OpenDSS compile), so a run it refuses could never have finished.
"""

from __future__ import annotations

import re
from pathlib import Path

from scenario.schema import Scenario, ScenarioError
from scenario.schema import duration_text as _human

# Bytes per step, measured on an ieee13 feeder at 1 s steps (its process peaks at ~460 bytes a
# step during set-up) and rounded: a load's profile as float64, with the diversified copy made on
# the way; each feeder's own arrays (irradiance, hours, load shape, DER schedules); each feeder
# process's step labels (Python strings) and time index; the other processes' time index and
# profiles (transmission, recorder).
BYTES_PER_LOAD_STEP = 16
BYTES_PER_FEEDER_STEP = 100
BYTES_PER_PROCESS_STEP = 150
BYTES_PER_RUN_STEP = 200
_NEW_LOAD = re.compile(r"^\s*new\s+(object\s*=\s*)?load\.", re.IGNORECASE | re.MULTILINE)


def count_loads(model: str) -> int:
    """Loads defined in the .dss files beside a feeder's master (at least 1; synthetic: unknown, 1)."""
    from grid.feeder import feeder_master_path

    if model.startswith("synthetic:"):
        return max(1, int(model.split(":", 1)[1]) // 4)  # about one load per four buses
    folder = feeder_master_path(model).parent
    found = 0
    for path in list(folder.glob("*.dss")) + list(folder.glob("*.DSS")):
        try:
            found += len(_NEW_LOAD.findall(path.read_text(errors="replace")))
        except OSError:
            continue
    return max(1, found)


def available_memory() -> int | None:
    """Bytes of memory available for new processes now (MemAvailable), None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_estimate(scenario: Scenario, feeder_processes: int) -> int:
    """A lower bound of the bytes the run's processes hold for its whole span."""
    steps = scenario.time.n_steps
    loads = sum(count_loads(f.model) for f in scenario.feeders)
    per_step = (BYTES_PER_LOAD_STEP * loads + BYTES_PER_FEEDER_STEP * len(scenario.feeders)
                + BYTES_PER_PROCESS_STEP * feeder_processes + BYTES_PER_RUN_STEP)
    return steps * per_step


def check_memory(scenario: Scenario, feeder_processes: int) -> None:
    """Refuse a run whose lower-bound memory exceeds what the machine has available now."""
    have = available_memory()
    need = memory_estimate(scenario, feeder_processes)
    if have is not None and need > have:
        t = scenario.time
        raise ScenarioError(
            f"time: {t.n_steps:,} steps ({_human(t.duration)} at {_human(t.step)} steps) need at least {need / 1e9:.1f} GB of memory "
            f"for the feeders' profiles, more than the {have / 1e9:.1f} GB available; shorten time.duration or "
            "lengthen time.step (or split the study into several runs)"
        )
