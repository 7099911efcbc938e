"""`tandem sweep --slurm` on a real single-node Slurm cluster started on this machine
(tests/slurm_cluster.py): a job array runs the cases, the status follows Slurm, failed cases
show their error, and submitting again sends only the unfinished ones."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from results.store import RunFile
from tests.conftest import tandem
from tests.slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)
from tests.test_sweep import states, write_sweep

SLURM = {"cpus_per_case": 1, "mem": "1G", "time": "10min", "partition": "debug"}


def _submit(path: Path, out: Path) -> str:
    proc = tandem("sweep", str(path), "-o", str(out), "--slurm", timeout=180)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    assert job.isdigit(), proc.stdout
    return job


def _wait_until_settled(out: Path, timeout: float, cluster) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = states(out)
        # done as soon as the file is complete; the runner writes its exit record just after
        if all(s["state"] in ("done", "failed") for s in now) and not list((out / "state").glob("*.running")):
            return now
        time.sleep(1.0)
    raise AssertionError(f"the sweep did not finish in {timeout:.0f} s: {now}\n{cluster.logs()}")


def test_slurm_job_array_runs_every_case_and_collects(tmp_path, slurm_cluster):  # noqa: F811
    path = write_sweep(tmp_path, {
        "name": "array",
        "grid": {"feeders.*.pv.penetration": [0.0, 0.5], "feeders.0.seed": [1, 2]},
        "slurm": SLURM,
    })
    out = tmp_path / "out"
    refused = tandem("sweep", str(path), "-o", str(out), "--slurm", "--partition", "nosuchpartition", timeout=120)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error: sbatch refused the job: ")
    assert "partition" in refused.stderr and not (out / "slurm" / "submissions.json").exists()

    job = _submit(path, out)
    first = states(out)
    assert all(s["state"] in ("pending", "running") and s["where"] for s in first), first
    assert any(f"Slurm task {job}_" in s["where"] or f"queued as Slurm task {job}_" in s["where"] for s in first)

    final = _wait_until_settled(out, 300, slurm_cluster)
    assert [s["state"] for s in final] == ["done"] * 4, final
    for i in range(4):
        with RunFile(out / "results" / f"case_{i:03d}.h5") as run:
            assert run.complete and run.n_steps == 8 and run.error == ""
            assert run.scenario["name"] == f"array_case_{i:03d}"
        record = json.loads((out / "state" / f"case_{i:03d}.exit").read_text())
        assert record["code"] == 0 and record["slurm"] == f"{job}_{i}"  # ran as array task i of the job
        assert (out / "logs" / f"slurm-{job}_{i}.out").exists()
    submissions = json.loads((out / "slurm" / "submissions.json").read_text())
    assert [(s["job_id"], s["indices"]) for s in submissions] == [(job, [0, 1, 2, 3])]

    proc = tandem("sweep", "collect", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out / "kpis.parquet")
    assert list(table["state"]) == ["done"] * 4 and list(table["steps"]) == [8.0] * 4
    assert list(table["feeders.*.pv.penetration"]) == [0.0, 0.0, 0.5, 0.5]
    assert list(table["feeders.0.seed"]) == [1, 2, 1, 2]
    assert (table["pv_delivered_MWh"] > 0).tolist() == [False, False, True, True]
    assert table["feeder_vmin_pu"].between(0.85, 1.1).all()

    again = tandem("sweep", str(path), "-o", str(out), "--slurm", timeout=120)
    assert again.returncode == 0 and "nothing to run: every case is done" in again.stderr


def test_slurm_failed_case_shows_its_error_and_only_it_is_submitted_again(tmp_path, slurm_cluster):  # noqa: F811
    path = write_sweep(tmp_path, {
        "name": "failing",
        "cases": [{"feeders.1.multiplier": 1.0}, {"feeders.1.multiplier": 30000.0}],
        "set": {"time.duration": "1h"},
        "slurm": SLURM,
    })
    out = tmp_path / "out"
    job = _submit(path, out)
    final = _wait_until_settled(out, 300, slurm_cluster)
    assert [s["state"] for s in final] == ["done", "failed"], final
    assert "federate 'transmission' failed: transmission power flow did not converge at step 0" in final[1]["error"]
    text = tandem("sweep", "status", str(out), timeout=60).stdout
    assert "1 done, 0 running, 1 failed, 0 pending" in text and "did not converge" in text

    second = _submit(path, out)
    assert second != job
    assert "#SBATCH --array=1" in (out / "slurm" / "sweep.sbatch").read_text().splitlines()
    submissions = json.loads((out / "slurm" / "submissions.json").read_text())
    assert [s["indices"] for s in submissions] == [[0, 1], [1]]
    final = _wait_until_settled(out, 300, slurm_cluster)
    assert [s["state"] for s in final] == ["done", "failed"]
    record = json.loads((out / "state" / "case_001.exit").read_text())
    assert record["slurm"] == f"{second}_1" and "did not converge" in record["error"]
    assert json.loads((out / "state" / "case_000.exit").read_text())["slurm"] == f"{job}_0"


def test_slurm_case_cancelled_after_a_checkpoint_resumes_there_when_submitted_again(tmp_path, slurm_cluster):  # noqa: F811
    """scancel (as a time limit) stops a long case; its next array task continues the results
    file from the checkpoint, and the case ends as an uninterrupted run would."""
    import subprocess

    from results.checkpoint import latest_checkpoint_step
    from tests.test_checkpoint import assert_same_results
    from tests.test_sweep import BASE

    base = {**BASE, "time": {"start": "2024-06-01T00:00:00", "duration": "3d", "step": "5min"},  # 864 steps
            "output": {"checkpoint_every": "2h"}}
    path = write_sweep(tmp_path, {"name": "long", "cases": [{"feeders.0.seed": 3}], "slurm": SLURM}, base)
    out = tmp_path / "out"
    results = out / "results" / "case_000.h5"
    job = _submit(path, out)
    deadline = time.monotonic() + 300
    while latest_checkpoint_step(results) is None:
        assert time.monotonic() < deadline, slurm_cluster.logs()
        time.sleep(0.05)
    subprocess.run(["scancel", job], check=True, capture_output=True, timeout=30)
    stopped = _wait_until_settled(out, 300, slurm_cluster)[0]
    assert stopped["state"] == "failed" and stopped["checkpoint"] is not None and stopped["steps"] < 864, stopped
    step = stopped["checkpoint"]

    second = _submit(path, out)
    final = _wait_until_settled(out, 300, slurm_cluster)[0]
    assert final["state"] == "done", final
    record = json.loads((out / "state" / "case_000.exit").read_text())
    assert record["slurm"] == f"{second}_0" and record["resumed_from_step"] == step + 1
    assert f"resuming case_000.h5 from its checkpoint after step {step}" in (out / "logs" / "case_000.log").read_text()
    reference = tmp_path / "reference.h5"
    proc = tandem("run", str(out / "cases" / "case_000.yaml"), "-o", str(reference), "-q", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert_same_results(reference, results)
