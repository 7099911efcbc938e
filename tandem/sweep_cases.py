"""Running the cases of a sweep and telling their state.

One case runs as `python -m tandem.sweep_cases FOLDER CASE` (the same on this machine and in a
Slurm array task): it writes `state/<id>.running` (pid, host, Slurm task), runs `tandem run` on
the case's scenario in a forked child process (a crash of the run cannot take the runner down), and
on exit writes `state/<id>.exit` (exit code and the run's one-line error) and removes the
running marker. An unfinished results file with a checkpoint (`output.checkpoint_every`) is
continued with `tandem run --resume` instead of started again. `logs/<id>.log` holds what
`tandem run` printed; the federates' logs are in `results/<id>_run/logs/`.

A case's state: `done` when its HDF5 file's `complete` flag is set; `running` while its runner
lives (this host: the pid; another host: Slurm's word); `failed` when it stopped otherwise
(error from the exit record or the file's `error` attribute); `pending` before it started.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from federates.forked import ForkedProcess, preload
from tandem.sweep_folder import SweepFolder

DONE, RUNNING, FAILED, PENDING = "done", "running", "failed", "pending"
EXIT_BUSY = 3  # the runner's exit code when another runner has the case
STATES = (DONE, RUNNING, FAILED, PENDING)
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING")  # Slurm job states
ACTIVE = ("RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict) -> None:
    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(data, indent=2))
    staging.replace(path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def running_marker(folder: SweepFolder, case: dict) -> Path:
    return folder.path / "state" / f"{case['id']}.running"


def exit_record(folder: SweepFolder, case: dict) -> Path:
    return folder.path / "state" / f"{case['id']}.exit"


def case_log(folder: SweepFolder, case: dict) -> Path:
    return folder.path / "logs" / f"{case['id']}.log"


def _slurm_task() -> str | None:
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return f"{job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def _error_line(log: Path) -> str:
    """The run's own one-line error (`error: ...`), the last one it printed."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):].strip()
        if line.startswith("interrupted: "):
            return line.strip()
    return ""


def _resumable_step(results: Path) -> int | None:
    """The checkpoint step an earlier attempt's unfinished results file can be resumed from."""
    found = _read_results(results)
    if found is None or found["complete"]:
        return None
    return found["checkpoint"]


def run_case(folder: SweepFolder, case: dict) -> int:
    """Run one case to its end; 0 when its results are complete. SIGTERM or SIGINT (scancel, a
    Slurm time limit, Ctrl-C) stop the run the way Ctrl-C stops `tandem run`: results kept.
    An earlier attempt's results with a checkpoint are resumed; without one it starts anew."""
    (folder.path / "state").mkdir(exist_ok=True)
    (folder.path / "logs").mkdir(exist_ok=True)
    # Held until this process ends: two sweeps started on one folder never run a case twice at once.
    lock = open(folder.path / "state" / f"{case['id']}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"error: {case['id']} is already running (another runner holds its lock)", file=sys.stderr)
        return EXIT_BUSY
    except OSError:
        pass  # a file system without locks: go on without
    results = folder.results(case)
    exit_record(folder, case).unlink(missing_ok=True)
    resume_from = _resumable_step(results)
    if resume_from is None:
        results.unlink(missing_ok=True)  # a stale file of an earlier attempt must not decide the state
    marker = running_marker(folder, case)
    _write_json(marker, {"pid": os.getpid(), "host": socket.gethostname(), "started_at": _now(), "slurm": _slurm_task()})
    log = case_log(folder, case)
    started = time.monotonic()
    stopped_by: list[str] = []
    children: list[subprocess.Popen] = []

    def stop(signum, _frame) -> None:
        stopped_by.append(signal.Signals(signum).name)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    run = ["run", "--resume", str(results)] if resume_from is not None else ["run", str(folder.scenario(case)), "-o", str(results)]
    with open(log, "a" if resume_from is not None else "w") as out:
        if resume_from is not None:
            print(f"{_now()} resuming {results.name} from its checkpoint after step {resume_from}", file=out, flush=True)
        if not stopped_by:
            devnull = os.open(os.devnull, os.O_RDONLY)
            try:
                children.append(ForkedProcess(
                    [sys.executable, "-m", "tandem.cli", *run, "-q"],
                    devnull, out.fileno(), out.fileno(),
                    death_signal=signal.SIGINT,  # SIGINT: the run keeps its results
                ))
            finally:
                os.close(devnull)
        code = children[0].wait() if children else 130
    if code == 0:
        error = ""
    elif stopped_by:
        error = f"stopped by {stopped_by[0]} (Ctrl-C, scancel or the Slurm time limit)"
    elif code < 0:
        error = f"tandem run was killed by {signal.Signals(-code).name}; see {log}"
    else:
        error = _error_line(log) or f"tandem run exited with code {code}; see {log}"
    _write_json(exit_record(folder, case), {
        "code": code, "error": error, "finished_at": _now(), "wall_s": round(time.monotonic() - started, 3),
        "host": socket.gethostname(), "slurm": _slurm_task(), "resumed_from_step": None if resume_from is None else resume_from + 1,
    })
    marker.unlink(missing_ok=True)
    return 0 if code == 0 else 1


# -- state ------------------------------------------------------------------------------------


@dataclass
class CaseState:
    id: str
    index: int
    parameters: dict
    state: str
    error: str = ""
    steps: int | None = None
    steps_planned: int | None = None
    wall_s: float | None = None
    where: str = ""  # host / pid / Slurm task while running or queued
    checkpoint: int | None = None  # the step an unfinished results file can be resumed after


def _pid_runs_case(pid: int, case: dict) -> bool:
    """Whether `pid` is a live runner of this case (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    # A runner forked by a local sweep shows its command line as one title (federates.forked).
    argv = [a for a in cmdline.split("\0") if a]
    if len(argv) == 1:
        try:
            argv = shlex.split(argv[0])
        except ValueError:
            argv = argv[0].split()
    return ("tandem.sweep_cases" in argv and bool(argv) and argv[-1] in (case["id"], str(case["index"]))
            and "State:\tZ" not in status)


def _read_results(path: Path) -> dict | None:
    """complete, error, steps of a results file; None if there is none (or not yet readable)."""
    if not path.is_file():
        return None
    from results.checkpoint import checkpoint_step
    from results.store import RunFile

    try:
        with RunFile(path) as run:
            return {
                "complete": run.complete, "error": run.error, "steps": run.n_steps,
                "planned": int(run.attr("n_steps_planned", 0)),
                "checkpoint": checkpoint_step(run.file),
            }
    except (OSError, KeyError):
        return {"complete": False, "error": "", "steps": 0, "planned": None, "checkpoint": None, "unreadable": True}


def case_state(folder: SweepFolder, case: dict, queue: dict[str, str] | None = None,
               submitted: dict[int, dict] | None = None) -> CaseState:
    """The state of one case. `queue`: Slurm state by task ('123_4' -> 'RUNNING'), None when
    Slurm cannot be asked; `submitted`: the Slurm task each case was last submitted as and when
    ({'task': '123_4', 'submitted_at': ...})."""
    out = CaseState(case["id"], case["index"], case["parameters"], PENDING)
    results = _read_results(folder.results(case))
    if results:
        out.steps, out.steps_planned = results["steps"], results["planned"]
        out.checkpoint = None if results["complete"] else results["checkpoint"]
    record = _read_json(exit_record(folder, case))
    if record:
        out.wall_s = record.get("wall_s")
    if results and results["complete"]:
        out.state = DONE
        return out
    marker = _read_json(running_marker(folder, case))
    if marker:
        task = marker.get("slurm")
        if marker.get("host") == socket.gethostname() and not (task and queue is not None):
            alive = _pid_runs_case(int(marker.get("pid", -1)), case)
            why = f"its runner (pid {marker.get('pid')}) is gone"
        elif task and queue is not None:
            slurm_state = queue.get(task, "")
            alive = slurm_state in ACTIVE
            why = f"Slurm task {task} ended ({slurm_state or 'no longer known to Slurm'})"
        else:
            alive, why = True, ""  # another host and no Slurm to ask: trust the marker
        if alive:
            out.state = RUNNING
            out.where = f"Slurm task {task} on {marker.get('host')}" if task else f"pid {marker.get('pid')} on {marker.get('host')}"
            return out
        out.state = FAILED
        out.error = f"stopped without finishing: {why}" + (f"; see logs/slurm-{task}.out" if task else "")
        return out
    submission = (submitted or {}).get(case["index"])
    if submission:
        task = submission["task"]
        # The runner clears the exit record when it starts: one older than the submission is
        # from an earlier attempt, and this task has not started the case (yet).
        started = record is not None and str(record.get("finished_at", "")) >= submission["submitted_at"]
        slurm_state = queue.get(task) if queue is not None else None
        if slurm_state in QUEUED:
            out.state, out.where = PENDING, f"queued as Slurm task {task}"
            return out
        if slurm_state in ACTIVE:
            out.state, out.where = RUNNING, f"Slurm task {task} (starting)"
            return out
        if not started and queue is None:
            out.where = f"submitted as Slurm task {task} (Slurm cannot be asked here)"
            return out
        if not started:
            out.state = FAILED
            out.error = (f"Slurm task {task} ended ({slurm_state or 'no longer known to Slurm'}) before the case "
                         f"started; see logs/slurm-{task}.out")
            return out
    if record and record.get("code") != 0:  # a run that ended well but whose file is gone runs again
        out.state = FAILED
        out.error = record.get("error") or (results or {}).get("error") or f"exit code {record.get('code')}"
        return out
    if results:
        out.state = FAILED
        out.error = results["error"] or (
            f"incomplete: {results['steps']} of {results['planned']} steps recorded and no error or exit record"
        )
    return out


def sweep_states(folder: SweepFolder) -> list[CaseState]:
    """The state of every case, asking Slurm once when the sweep was submitted there."""
    from tandem import slurm

    submitted = slurm.submitted_tasks(folder)
    markers = [_read_json(running_marker(folder, c)) for c in folder.cases]
    needs_queue = bool(submitted) or any(m and m.get("slurm") for m in markers)
    queue = slurm.queue_states() if needs_queue else None
    return [case_state(folder, case, queue, submitted) for case in folder.cases]


# -- running on this machine ------------------------------------------------------------------


@dataclass
class Finished:
    case: dict
    code: int
    wall_s: float
    error: str


def run_local(
    folder: SweepFolder, cases: list[dict], parallel: int, on_finished: Callable[[Finished], None] | None = None,
    on_started: Callable[[dict], None] | None = None,
) -> list[Finished]:
    """Run `cases` here, `parallel` at a time, each in its own runner process; returns them in
    the order they finished. Ctrl-C stops the running ones (their results are kept) and re-raises."""
    waiting = list(cases)
    live: dict[str, tuple[ForkedProcess, dict, float]] = {}
    finished: list[Finished] = []
    from federates.launcher import FEDERATE_MODULES

    # Every case's runner, `tandem run` and federates are forked from here and find these
    # imported: a case costs its run, not seconds of imports (see federates.forked).
    for module in ("tandem.cli", *FEDERATE_MODULES):
        preload(module)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        while waiting or live:
            while waiting and len(live) < parallel:
                case = waiting.pop(0)
                proc = ForkedProcess(  # in its own session: Ctrl-C reaches the driver only
                    [sys.executable, "-m", "tandem.sweep_cases", str(folder.path), case["id"]],
                    devnull, 1, 2, death_signal=signal.SIGTERM,  # this process's own stdout, stderr
                )
                live[case["id"]] = (proc, case, time.monotonic())
                if on_started:
                    on_started(case)
            for case_id, (proc, case, started) in list(live.items()):
                code = proc.poll()
                if code is None:
                    continue
                del live[case_id]
                if code == EXIT_BUSY:
                    finished.append(Finished(case, code, 0.0, "already running in another runner: not started"))
                    if on_finished:
                        on_finished(finished[-1])
                    continue
                record = _read_json(exit_record(folder, case))
                if record is None:  # the runner itself died: say so where the state is read
                    why = f"the case runner was killed by {signal.Signals(-code).name}" if code < 0 else f"the case runner exited with code {code}"
                    record = {"code": code, "error": why, "finished_at": _now(), "wall_s": round(time.monotonic() - started, 3),
                              "host": socket.gethostname(), "slurm": None}
                    _write_json(exit_record(folder, case), record)
                    running_marker(folder, case).unlink(missing_ok=True)
                done = Finished(case, int(record["code"]), float(record.get("wall_s") or 0.0), record.get("error", ""))
                finished.append(done)
                if on_finished:
                    on_finished(done)
            time.sleep(0.1)
    except KeyboardInterrupt:
        for proc, _, _ in live.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _, _ in live.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        os.close(devnull)
    return finished


def main(argv: list[str] | None = None) -> int:
    """`python -m tandem.sweep_cases FOLDER CASE`: CASE is an id (case_003) or an index (3)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tandem.sweep_cases FOLDER CASE", file=sys.stderr)
        return 2
    try:
        folder = SweepFolder(args[0])
        case = folder.case(args[1])
    except ValueError as exc:  # ScenarioError, raised by SweepFolder
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_case(folder, case)


if __name__ == "__main__":
    sys.exit(main())
