"""`tandem sweep`: expansion and validation, running cases here N at a time, state, re-runs,
the collected table, and the sbatch script (the real Slurm runs are in test_sweep_slurm.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from results.store import RunFile
from scenario.schema import load_scenario
from tests.conftest import ROOT, processes_mentioning, tandem

BASE = {
    "name": "tiny",
    "transmission": {"network": "case9"},
    "feeders": [
        {"name": "f13", "model": "ieee13", "bus": 4, "pv": {"penetration": 0.3}},
        {"name": "f13b", "model": "ieee13", "bus": 6, "multiplier": 2.0},
    ],
    "time": {"start": "2024-06-01T10:00:00", "duration": "2h", "step": "15min"},
}


def write_sweep(tmp_path: Path, sweep: dict, base: dict | None = None) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or BASE))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", **sweep}, sort_keys=False))
    return path


def states(folder: Path) -> list[dict]:
    proc = tandem("sweep", "status", str(folder), "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize(
    "sweep, expected",
    [
        ({"grid": {"feeders.0.pv.size": [1, 2]}}, "grid: feeders.0.pv.size: unknown scenario key 'feeders.0.pv.size'"),
        ({"grid": {"colour": ["red"]}}, "grid: colour: unknown scenario key 'colour'"),
        ({"grid": {"feeders.2.seed": [1]}}, "feeders.2.seed: the base scenario has 2 entries in feeders (indices 0..1)"),
        ({"grid": {"feeders.first.seed": [1]}}, "feeders is a list; give an index (0..1) or * (got 'first')"),
        ({"grid": {"time.step.minutes": [5]}}, "time.step.minutes: time.step is a single value"),
        ({"cases": [{"coordination.scheme": "none"}, {"coordination.scheme": "bogus"}]},
         "case_001 (coordination.scheme=bogus): coordination.scheme: Input should be 'none', 'local', 'centralized'"),
        ({"grid": {"feeders.0.bus": [4, 99]}}, "case_001 (feeders.0.bus=99): feeders.0.bus: unknown bus 99"),
        ({"grid": {"output.path": ["x.h5"]}}, "output.path: set by the sweep itself"),
        ({"grid": {"seed": [1]}}, "unknown scenario key 'seed'"),
        ({"grid": {"coordination.scheme": []}}, "grid: coordination.scheme: give at least one value"),
        ({"set": {"time.duration": "1h"}}, "give the parameters to vary under grid or cases"),
        ({"grid": {"feeders.0.seed": [1]}, "cases": [{"feeders.0.seed": 2}]}, "cases.0: feeders.0.seed is also in grid"),
        ({"cases": [{"feeders.0.seed": 1}, {"feeders.0.seed": 1}]}, "case_001 and case_000 set the same values"),
        ({"grid": {"feeders.0.seed": [1]}, "slurm": {"mem": "lots"}}, "slurm.mem: give memory as a whole number"),
        ({"grid": {"feeders.0.seed": [1]}, "colour": "red"}, "colour: unknown key"),
    ],
)
def test_bad_sweeps_are_rejected_before_anything_is_written(tmp_path, sweep, expected):
    path = write_sweep(tmp_path, sweep)
    out = tmp_path / "out"
    proc = tandem("sweep", str(path), "-o", str(out), "--local", "2", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert not out.exists()


def test_missing_sweep_file_and_folder(tmp_path):
    proc = tandem("sweep", str(tmp_path / "nope.yaml"), timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: sweep file not found: {tmp_path / 'nope.yaml'}"
    proc = tandem("sweep", "status", str(tmp_path), timeout=60)
    assert proc.returncode == 2 and "not a sweep folder (no manifest.json)" in proc.stderr
    proc = tandem("sweep", "collect", timeout=60)
    assert proc.returncode == 2 and "give the sweep folder" in proc.stderr


def test_grid_times_cases_expands_into_scenario_files_and_a_manifest(tmp_path):
    path = write_sweep(tmp_path, {
        "name": "expand",
        "set": {"time.duration": "1h", "feeders.1.load_profile": "commercial"},
        "grid": {"feeders.*.pv.penetration": [0.0, 0.25, 0.5], "coordination.scheme": ["none", "local"]},
        "cases": [{"feeders.0.seed": 3}, {"feeders.0.seed": 4, "feeders.1.multiplier": 3.0}],
    })
    out = tmp_path / "out"
    proc = tandem("sweep", str(path), "-o", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "expand"
    assert manifest["parameters"] == ["feeders.0.seed", "feeders.1.multiplier", "feeders.*.pv.penetration", "coordination.scheme"]
    cases = manifest["cases"]
    assert [c["id"] for c in cases] == [f"case_{i:03d}" for i in range(12)]
    # explicit cases outermost, then the grid in the order written
    assert cases[9]["parameters"] == {"feeders.0.seed": 4, "feeders.1.multiplier": 3.0,
                                      "feeders.*.pv.penetration": 0.25, "coordination.scheme": "local"}
    # a key a case does not set shows the value the case runs with
    assert cases[0]["parameters"]["feeders.1.multiplier"] == 2.0
    assert sorted(p.name for p in (out / "cases").iterdir()) == [f"case_{i:03d}.yaml" for i in range(12)]
    assert (out / "sweep.yaml").read_text() == path.read_text()
    for case in cases:
        scenario = load_scenario(out / case["scenario"])
        p = case["parameters"]
        assert scenario.name == f"expand_{case['id']}"
        assert [f.pv.penetration for f in scenario.feeders] == [p["feeders.*.pv.penetration"]] * 2
        assert scenario.coordination.scheme == p["coordination.scheme"]
        assert scenario.feeders[0].seed == p["feeders.0.seed"]
        assert scenario.feeders[1].multiplier == p["feeders.1.multiplier"]
        assert scenario.feeders[1].load_profile == "commercial"
        assert scenario.time.n_steps == 4 and scenario.federation.broker_port == "auto"
    assert not any((out / "results").iterdir()), "expanding alone runs nothing"
    # the same sweep again keeps the folder; a changed one is refused
    assert tandem("sweep", str(path), "-o", str(out), timeout=120).returncode == 0
    changed = write_sweep(tmp_path, {"grid": {"feeders.0.seed": [1, 2]}})
    proc = tandem("sweep", str(changed), "-o", str(out), timeout=120)
    assert proc.returncode == 2 and f"{out} holds a different sweep" in proc.stderr


def test_local_sweep_records_failures_reruns_only_unfinished_and_collects(tmp_path):
    path = write_sweep(tmp_path, {
        "name": "local",
        "grid": {"feeders.0.pv.penetration": [0.0, 0.6]},
        # 30000 copies of a feeder: the transmission power flow cannot converge
        "cases": [{"feeders.1.multiplier": 1.0}, {"feeders.1.multiplier": 30000.0}],
    })
    out = tmp_path / "out"
    proc = tandem("sweep", str(path), "-o", str(out), "--local", "2", timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "2 done, 2 failed" in proc.stderr
    by_id = {s["id"]: s for s in states(out)}
    assert [by_id[c]["state"] for c in sorted(by_id)] == ["done", "done", "failed", "failed"]
    for case in ("case_002", "case_003"):
        assert "federate 'transmission' failed: transmission power flow did not converge at step 0" in by_id[case]["error"]
    for case in ("case_000", "case_001"):
        with RunFile(out / "results" / f"{case}.h5") as run:
            assert run.complete and run.n_steps == 8 and run.error == ""
        assert by_id[case]["steps"] == 8 and by_id[case]["steps_planned"] == 8
    ports = {json.loads((out / "results" / f"case_00{i}_run" / "federation.json").read_text())["broker"]["port"] for i in range(4)}
    assert len(ports) == 4, "every case has its own broker port"
    text = tandem("sweep", "status", str(out), timeout=60).stdout
    assert text.splitlines()[0] == "sweep local: 4 cases: 2 done, 0 running, 2 failed, 0 pending"
    assert "error: federate 'transmission' failed" in text

    # collect: one row per case, the swept values as columns, the KPIs as numbers
    proc = tandem("sweep", "collect", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    csv, parquet = pd.read_csv(out / "kpis.csv"), pd.read_parquet(out / "kpis.parquet")
    assert list(parquet["case"]) == ["case_000", "case_001", "case_002", "case_003"]
    assert list(parquet["feeders.0.pv.penetration"]) == [0.0, 0.6, 0.0, 0.6]
    assert list(parquet["feeders.1.multiplier"]) == [1.0, 1.0, 30000.0, 30000.0]
    assert list(parquet["state"]) == ["done", "done", "failed", "failed"]
    assert list(parquet["steps"]) == [8.0, 8.0, 0.0, 0.0]
    assert parquet["pv_delivered_MWh"][0] == 0.0 and parquet["pv_delivered_MWh"][1] > 0.0
    from tandem.kpis import kpis

    direct = kpis(out / "results" / "case_001.h5")
    assert parquet["feeder_vmin_pu"][1] == pytest.approx(direct["feeder_vmin_pu"])
    assert parquet["feeder_vmin_where"][1] == direct["feeder_vmin_where"]
    assert csv["pv_delivered_MWh"][1] == pytest.approx(direct["pv_delivered_MWh"])
    assert "did not converge" in parquet["error"][3] and not parquet["error"][0]

    # run again: only the failed cases run; a done case whose results vanish runs again too
    done_mtime = (out / "results" / "case_000.h5").stat().st_mtime_ns
    (out / "results" / "case_001.h5").unlink()
    assert [s["state"] for s in states(out)][1] == "pending"
    proc = tandem("sweep", str(path), "-o", str(out), "--local", "2", timeout=600)
    assert proc.returncode == 1
    assert "1 done already" in proc.stderr and "running 3 cases" in proc.stderr
    assert "case_000" not in proc.stderr.split("running 3 cases")[1]
    assert (out / "results" / "case_000.h5").stat().st_mtime_ns == done_mtime
    assert [s["state"] for s in states(out)] == ["done", "done", "failed", "failed"]


def test_a_sweep_on_a_terminal_keeps_its_cases_errors_plain(tmp_path):
    """The driver's console colours the terminal; the `tandem run` it forks writes a log, whose
    one-line error the case's state is read from."""
    import pty
    import select

    path = write_sweep(tmp_path, {"name": "tty", "cases": [{"feeders.1.multiplier": 30000.0}]})
    out = tmp_path / "out"
    master, terminal = pty.openpty()
    try:
        driver = subprocess.Popen([sys.executable, "-m", "tandem.cli", "sweep", str(path), "-o", str(out), "--local", "1"],
                                  stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, cwd=ROOT)
        os.close(terminal)
        shown, deadline = b"", time.monotonic() + 300
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # every process holding the terminal has gone
                    break
                if not chunk:
                    break
                shown += chunk
            elif driver.poll() is not None:
                break
        driver.wait(timeout=60)
    finally:
        os.close(master)
    assert driver.returncode == 1, shown
    assert b"\x1b[" in shown  # coloured: rich saw a terminal
    log = (out / "logs" / "case_000.log").read_text()
    assert "\x1b[" not in log and "error: federate 'transmission' failed" in log
    assert "transmission power flow did not converge at step 0" in states(out)[0]["error"]


def test_a_running_case_shows_as_running_and_ctrl_c_stops_the_sweep(tmp_path):
    base = {**BASE, "time": {"start": "2024-06-01T00:00:00", "duration": "7d", "step": "5min"}}  # 2016 steps
    path = write_sweep(tmp_path, {"name": "long", "grid": {"feeders.0.seed": [1, 2, 3]}}, base)
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "sweep", str(path), "-o", str(out), "--local", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        deadline = started + 300  # a loaded machine starts federates slowly
        seen: list[dict] = []
        while time.monotonic() < deadline:
            if (out / "manifest.json").exists():
                seen = states(out)
                if sum(s["state"] == "running" for s in seen) == 2 and all(s["steps"] for s in seen[:2]):
                    break
            time.sleep(0.5)
        assert [s["state"] for s in seen] == ["running", "running", "pending"], (time.monotonic() - started, seen)
        assert all(s["where"].startswith("pid ") for s in seen[:2])
        # a second runner of a running case (another sweep on the same folder) leaves it alone
        second = subprocess.run([sys.executable, "-m", "tandem.sweep_cases", str(out), "case_000"],
                                capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert second.returncode == 3 and "case_000 is already running" in second.stderr
        assert states(out)[0]["state"] == "running"
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, stderr
    after = states(out)
    assert [s["state"] for s in after] == ["failed", "failed", "pending"]
    for s in after[:2]:
        assert s["error"].startswith("stopped by SIGTERM") and 0 < s["steps"] < 2016
        with RunFile(out / "results" / f"{s['id']}.h5") as run:
            assert not run.complete and run.n_steps == s["steps"]
    assert not processes_mentioning(str(out))


def test_a_stopped_case_with_checkpoints_resumes_when_the_sweep_runs_again(tmp_path):
    """A case stopped after a checkpoint (as scancel or a Slurm time limit stops it) continues
    from there when the sweep runs again, and ends with the results of an uninterrupted run."""
    from results.checkpoint import latest_checkpoint_step
    from tests.test_checkpoint import assert_same_results

    base = {**BASE, "time": {"start": "2024-06-01T00:00:00", "duration": "2d", "step": "5min"},  # 576 steps
            "output": {"checkpoint_every": "2h"}}
    path = write_sweep(tmp_path, {"name": "resume", "cases": [{"feeders.0.seed": 1}]}, base)
    out = tmp_path / "out"
    assert tandem("sweep", str(path), "-o", str(out), timeout=120).returncode == 0
    results = out / "results" / "case_000.h5"
    runner = subprocess.Popen([sys.executable, "-m", "tandem.sweep_cases", str(out), "case_000"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and runner.poll() is None and latest_checkpoint_step(results) is None:
            time.sleep(0.05)
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    stopped = states(out)[0]
    assert stopped["state"] == "failed" and stopped["error"].startswith("stopped by SIGTERM"), stopped
    step = stopped["checkpoint"]
    assert step is not None and step % 24 == 23 and stopped["steps"] < 576
    assert f"checkpoint after step {step}: running the sweep again resumes it there" in tandem("sweep", "status", str(out)).stdout

    proc = tandem("sweep", str(path), "-o", str(out), "--local", "1", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming case_000.h5 from its checkpoint after step {step}" in (out / "logs" / "case_000.log").read_text()
    assert json.loads((out / "state" / "case_000.exit").read_text())["resumed_from_step"] == step + 1
    after = states(out)[0]
    assert after["state"] == "done" and after["checkpoint"] is None
    reference = tmp_path / "reference.h5"
    proc = tandem("run", str(out / "cases" / "case_000.yaml"), "-o", str(reference), "-q", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert_same_results(reference, results)


def test_dry_run_writes_the_sbatch_script_only(tmp_path):
    path = write_sweep(tmp_path, {
        "name": "batch",
        "grid": {"feeders.0.pv.penetration": [0.0, 0.5], "feeders.0.seed": [1, 2, 3]},
        "slurm": {"partition": "short", "account": "grid-lab", "time": "90min", "cpus_per_case": 3, "mem": "6G",
                  "max_running": 4, "options": ["--qos=normal"], "setup": ["module load hdf5"]},
    })
    out = tmp_path / "out"
    env_pythonpath = os.environ.get("PYTHONPATH")
    proc = tandem("sweep", str(path), "-o", str(out), "--slurm", "--dry-run", "--time", "2h", "--mem", "8G", timeout=120)
    assert proc.returncode == 0, proc.stderr
    script = out / "slurm" / "sweep.sbatch"
    assert proc.stdout.strip() == str(script)
    text = script.read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in ("#SBATCH --array=0-5%4", "#SBATCH --partition=short", "#SBATCH --account=grid-lab",
                     "#SBATCH --time=0-02:00:00", "#SBATCH --cpus-per-task=3", "#SBATCH --mem=8G", "#SBATCH --qos=normal",
                     f"#SBATCH --chdir={ROOT}", f"#SBATCH --output={out}/logs/slurm-%A_%a.out", "module load hdf5"):
        assert expected in lines, expected
    assert lines[-1] == f'exec {sys.executable} -m tandem.sweep_cases {out} "$SLURM_ARRAY_TASK_ID"'
    assert (f"export PYTHONPATH={env_pythonpath}" in lines) == bool(env_pythonpath)
    assert not (out / "slurm" / "submissions.json").exists()
    assert os.access(script, os.X_OK)
    bad = tandem("sweep", str(path), "-o", str(tmp_path / "o2"), "--slurm", "--time", "soon", "--dry-run", timeout=60)
    assert bad.returncode == 2 and "slurm options: time:" in bad.stderr


def test_array_spec_and_time_limit():
    import pandas as pd

    from tandem.slurm import array_spec, time_limit

    assert array_spec([7, 0, 1, 2, 5, 8]) == "0-2,5,7-8"
    assert array_spec([3]) == "3"
    assert time_limit(pd.Timedelta("90min")) == "0-01:30:00"
    assert time_limit(pd.Timedelta("1d2h30s")) == "1-02:01:00"
