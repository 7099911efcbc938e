"""Shared helpers: run the real `tandem` command and look for leftover processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "runs" / "small_iterative.yaml"
REFERENCE = ROOT.parent / "shared" / "reference" / "opendss"


def helics_app(name: str) -> str:
    """A HELICS program: the binary the helics package ships (its PATH wrapper would start the
    binary as a child, which a timed-out test could orphan), else the wrapper beside Python."""
    import helics

    binary = Path(helics.__file__).parent / "install" / "bin" / name
    if binary.exists():
        return str(binary)
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def tandem(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `tandem ...` as a user would, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "tandem.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, stdin=subprocess.DEVNULL,
    )


def run_processes(run_dir: Path) -> list[str]:
    """Live processes of a run: its federates (which name the run folder) and its broker (by port)."""
    import json

    config = json.loads((run_dir / "federation.json").read_text())
    return processes_mentioning(str(run_dir)) + processes_mentioning(f"--port={config['broker']['port']} ")


def rows_written(path: Path) -> int:
    """Rows a running recorder has written to its results file so far (0 while it creates it)."""
    from results.store import RunFile

    try:
        with RunFile(path) as run:
            return run.n_steps
    except (OSError, KeyError):
        return 0


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (e.g. a run folder)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if text in cmdline and "State:\tZ" not in status:
            found.append(f"{pid}: {cmdline}")
    return found


@pytest.fixture(scope="session")
def small_scenario_path() -> Path:
    return SMALL


@pytest.fixture(scope="module")
def ieee13():
    """The IEEE 13 feeder's data for the optimisation models, after one OpenDSS solve (taps settled)."""
    from coordination.network_data import feeder_data
    from grid.feeder import FeederModel

    model = FeederModel("ieee13", "ieee13")
    model.solve()
    return feeder_data(model)


LOG_TAIL_LINES = 15


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, the tails of the federates' logs of every run the test started (its
    `*_run/logs` folders under tmp_path): CI keeps no files, and a run that failed on a
    loaded machine is understood only from them."""
    outcome = yield
    report = outcome.get_result()
    tmp = item.funcargs.get("tmp_path") if hasattr(item, "funcargs") else None
    if not report.failed or tmp is None:
        return
    tails = []
    for log in sorted(Path(tmp).glob("**/logs/*.log"))[:40]:
        try:
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            continue
        tails.append(f"== {log.relative_to(tmp)}\n" + "\n".join(lines))
    if tails:
        report.sections.append(("federate logs", "\n".join(tails)))
