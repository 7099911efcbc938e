"""The processes of a run, declared once: the launcher derives from this table the process
names, the command lines and runner file, what it forks, the order it blames failures in and
what `--federates` accepts; the recorder the checkpoint parts.

The table's order is the start order: broker first, the recorder last.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from federates import interfaces as names

BROKER = "broker"


@dataclass(frozen=True)
class ProcessKind:
    name: str  # process name (runner, logs) and HELICS federate name; "{group}" for one per feeder group
    module: str | None  # started as `python -m <module>`; None: the helics_broker binary
    count: str  # "one", "per feeder group", or "with a coordinator" (one when the scenario coordinates)
    checkpoint_part: str | None = None  # the part of a checkpoint its state is saved in
    replays_on_resume: bool = False  # rebuilds its state at length before the first step of a resumed run

    def names(self, n_groups: int, coordinated: bool) -> list[str]:
        """This kind's processes in a run."""
        if self.count == "per feeder group":
            return [self.name.format(group=g) for g in range(n_groups)]
        if self.count == "with a coordinator" and not coordinated:
            return []
        return [self.name]

    def matches(self, process: str) -> bool:
        if "{group}" not in self.name:
            return process == self.name
        prefix = self.name.split("{group}")[0]
        return process.startswith(prefix) and process[len(prefix):].isdigit()

    def argv(self, process: str, config_path: Path) -> list[str]:
        """The command line of one of this kind's federate processes."""
        group = ["--group", process[len(self.name.split("{group}")[0]):]] if "{group}" in self.name else []
        return [sys.executable, "-m", self.module, "--config", str(config_path), *group]


PROCESSES: tuple[ProcessKind, ...] = (
    ProcessKind(BROKER, None, "one"),
    ProcessKind(names.TRANSMISSION, "federates.transmission", "one", checkpoint_part="transmission"),
    ProcessKind(names.FEEDER_GROUP, "federates.feeders", "per feeder group",
                checkpoint_part="feeders", replays_on_resume=True),
    ProcessKind(names.COORDINATOR, "federates.coordinator", "with a coordinator", checkpoint_part="coordinator",
                replays_on_resume=True),
    ProcessKind(names.RECORDER, "federates.recorder", "one"),
)
FEDERATE_MODULES = tuple(kind.module for kind in PROCESSES if kind.module)


def process_names(n_groups: int, coordinated: bool) -> list[str]:
    """The processes of a run, in start order."""
    return [name for kind in PROCESSES for name in kind.names(n_groups, coordinated)]


def kind_of(process: str) -> ProcessKind:
    for kind in PROCESSES:
        if kind.matches(process):
            return kind
    raise KeyError(f"no process kind for {process!r}")


def markdown_processes() -> str:
    """The process table of docs/interfaces.md."""
    counts = {"one": "1", "per feeder group": "`federation.feeder_processes` (see `docs/scenario.md`)",
              "with a coordinator": "1 when `coordination.scheme` is a coordinated scheme, else 0"}
    lines = ["| process name (runner, logs) | HELICS federate name | started as | count |", "|---|---|---|---|"]
    for kind in PROCESSES:
        shown = kind.name.replace("{group}", "<g>")
        if kind.module is None:
            started, federate = ("`helics_broker` binary from the `helics` package (`helics/install/bin/helics_broker`; "
                                 "the `helics_broker` on `PATH` only if that is missing)"), "(broker)"
        else:
            group = " --group <g>" if "{group}" in kind.name else ""
            started, federate = f"`python -m {kind.module} --config <run>/federation.json{group}`", f"`{shown}`"
        lines.append(f"| `{shown}` | {federate} | {started} | {counts[kind.count]} |")
    lines.append("| observers | chosen by you | external, e.g. `helics_recorder` or a DER coordinator | `--observers N` |")
    return "\n".join(lines)


def listing() -> str:
    """The kinds as a user names them: broker, transmission, feeders_<g>, ..."""
    return ", ".join(kind.name.replace("{group}", "<g>") for kind in PROCESSES)
