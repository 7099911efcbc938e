"""Slurm: a sweep as one job array (one case per array task).

`write_script` writes `slurm/sweep.sbatch` into the sweep folder; array task i runs case i
with the Python that wrote the script (`sys.executable`), in the working directory it was
written from, with PYTHONPATH forwarded when it is set. `submit` hands it to `sbatch` and
records the job in `slurm/submissions.json`, which the status reads to tell queued cases
from ones that never started.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from tandem.sweep_folder import SweepFolder

if TYPE_CHECKING:
    import pandas as pd

    from tandem.sweep import SlurmSpec

SCRIPT = Path("slurm") / "sweep.sbatch"
SUBMISSIONS = Path("slurm") / "submissions.json"


class SlurmError(RuntimeError):
    """sbatch is missing or refused the job; one line."""


def array_spec(indices: list[int]) -> str:
    """Compact Slurm array list: [0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    parts, run = [], []
    for i in sorted(set(indices)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def time_limit(limit: pd.Timedelta) -> str:
    """Slurm's D-HH:MM:SS, rounded up to whole minutes."""
    minutes = -(-int(limit.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def _plain(path: Path, what: str) -> str:
    """#SBATCH lines are not read by a shell: paths there cannot be quoted."""
    text = str(path)
    if any(c.isspace() for c in text):
        raise SlurmError(f"{what} {text!r} holds white space, which #SBATCH lines cannot carry; use another folder")
    return text


def write_script(folder: SweepFolder, spec: SlurmSpec, indices: list[int], workdir: Path | None = None) -> Path:
    """The sbatch script for the given case indices (the array holds only these)."""
    workdir = (workdir or Path.cwd()).resolve()
    lines = [
        "#!/bin/bash",
        f"# Sweep {folder.name}: one case per array task (written by `tandem sweep --slurm`).",
        f"#SBATCH --job-name=tandem-{folder.name}",
        f"#SBATCH --array={array_spec(indices)}" + (f"%{spec.max_running}" if spec.max_running else ""),
        f"#SBATCH --output={_plain(folder.path, 'the sweep folder')}/logs/slurm-%A_%a.out",
        f"#SBATCH --chdir={_plain(workdir, 'the working directory')}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={spec.cpus_per_case}",
        f"#SBATCH --mem={spec.mem}",
        f"#SBATCH --time={time_limit(spec.time)}",
    ]
    if spec.partition:
        lines.append(f"#SBATCH --partition={spec.partition}")
    if spec.account:
        lines.append(f"#SBATCH --account={spec.account}")
    lines += [f"#SBATCH {option}" for option in spec.options]
    lines += ["", "set -eu", *spec.setup]
    if os.environ.get("PYTHONPATH"):
        lines.append(f"export PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])}")
    lines += [
        "# The Python (and so the tandem) that wrote this script.",
        f"exec {shlex.quote(sys.executable)} -m tandem.sweep_cases {shlex.quote(str(folder.path))} \"$SLURM_ARRAY_TASK_ID\"",
        "",
    ]
    path = folder.path / SCRIPT
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines))
    path.chmod(0o755)
    return path


def submit(folder: SweepFolder, script: Path, indices: list[int]) -> str:
    """Submit the script; returns the job id (raises SlurmError)."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SlurmError("sbatch not found: submit from a Slurm login node, or write the script only with --dry-run")
    proc = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise SlurmError(f"sbatch refused the job: {reason}")
    job_id = proc.stdout.strip().split(";")[0]
    record = folder.path / SUBMISSIONS
    submissions = json.loads(record.read_text()) if record.is_file() else []
    submissions.append({
        "job_id": job_id, "indices": sorted(indices),
        "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "script": str(script),
    })
    record.write_text(json.dumps(submissions, indent=2))
    return job_id


def submitted_tasks(folder: SweepFolder) -> dict[int, dict]:
    """Case index -> the Slurm array task it was last submitted as and when
    ({'task': '123_4', 'submitted_at': '2026-...'})."""
    record = folder.path / SUBMISSIONS
    try:
        submissions = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return {i: {"task": f"{s['job_id']}_{i}", "submitted_at": s["submitted_at"]} for s in submissions for i in s["indices"]}


def queue_states() -> dict[str, str] | None:
    """Slurm's state of every job it still knows ('123_4' -> 'PENDING'), or None when it
    cannot be asked (no squeue here, or no controller)."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        proc = subprocess.run(
            [squeue, "--noheader", "--array", "--states=all", "--format=%F|%K|%i|%T"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        array_job, task, job, state = parts
        key = f"{array_job}_{task}" if task not in ("", "N/A") else job
        states[key] = state
    return states
