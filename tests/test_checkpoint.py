"""Checkpoint and resume: a run killed after a checkpoint and resumed gives the results of an
uninterrupted run, with real federates killed by SIGKILL. Also the feeder and transmission
models' saved states alone, and the cases `--resume` refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

from grid.feeder import build_feeder
from grid.setpoints import Setpoints
from grid.transmission import TransmissionModel
from results.checkpoint import read_checkpoint, write_checkpoint
from scenario.schema import ScenarioError, load_scenario
from tandem.cli import main as cli_main
from tandem.study import resolve_scenario
from tests.conftest import ROOT, run_processes, tandem

SCENARIO = """
name: checkpoint_test
transmission: {network: case30}
feeders:
  - name: f13
    model: ieee13
    bus: 6
    multiplier: match_bus_load
    bus_load: replace
    load_profile: commercial
    pv: {penetration: 0.8, count: 4}
    battery: {penetration: 0.3, count: 2}
    controls: {regulators: true, capacitors: true}
  - name: f123
    model: ieee123
    bus: 20
    load_profile: residential
    pv: {penetration: 0.6, count: 10}
    battery: {penetration: 0.2, count: 3}
    ev: {penetration: 0.3}
time: {start: "2024-07-01T06:00:00", duration: 6h, step: 5min}
coupling: {mode: loose}
"""

# Wall times differ between runs by nature; everything else must not.
WALL_TIMES = ("coordinator/solve_s", "coordinator/highs_s", "coordinator/update_s", "coordinator/plan_s")


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        def keep(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset) and not name.startswith(("timing/", "checkpoint")) and name not in WALL_TIMES:
                out[name] = obj[()]
        f.visititems(keep)
    return out


def assert_same_results(full: Path, resumed: Path) -> None:
    """Every dataset but wall times equal to 1e-9, the same rows, each step exactly once."""
    a, b = _datasets(full), _datasets(resumed)
    assert sorted(a) == sorted(b)
    with h5py.File(full, "r") as fa, h5py.File(resumed, "r") as fb:
        assert fb.attrs["complete"] and fb.attrs["error"] == ""
        step = float(fa["time/seconds"][1] - fa["time/seconds"][0])
        n = int(fa.attrs["n_steps_planned"])
    np.testing.assert_array_equal(b["time/seconds"], np.arange(n) * step)  # no duplicated or missing rows
    for name, expected in a.items():
        got = b[name]
        assert got.shape == expected.shape, name
        if expected.dtype.kind in "fiu":
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=name)
        else:
            assert np.array_equal(got, expected), name


def _kill_after_checkpoint(args: list[str], output: Path, step: int, victim: str) -> subprocess.CompletedProcess:
    """Start `tandem run`, wait until the recorder has written the checkpoint after `step`,
    then SIGKILL the federate `victim` (e.g. `feeders`: the first feeder process). The other
    federates may run ahead of the recorder, so the run must have steps to spare."""
    run_dir = output.with_name(output.stem + "_run")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "run", *args, "-o", str(output), "-q"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    log = run_dir / "logs" / "recorder.log"
    deadline = time.monotonic() + 240
    pids: list[int] = []
    while time.monotonic() < deadline and launcher.poll() is None:
        if not pids and (run_dir / "federation.json").exists():  # found first: the kill then follows the checkpoint at once
            pids = [int(line.split(":")[0]) for line in run_processes(run_dir) if f"federates.{victim}" in line]
        elif log.exists() and f"checkpoint after step {step} written" in log.read_text():
            os.kill(pids[0], signal.SIGKILL)
            break
        time.sleep(0.005)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0, f"the run ended before {victim} could be killed"
    assert not run_processes(run_dir), "processes left behind"
    return subprocess.CompletedProcess(launcher.args, launcher.returncode, out, err)


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint_test.yaml"
    path.write_text(SCENARIO)
    return path


COUPLINGS = {"loose": ["--feeder-processes", "2"], "iterative": ["--coupling", "iterative"]}


@pytest.fixture(scope="module")
def full_runs(scenario_file) -> Callable[..., Path]:
    """The uninterrupted runs, made on first use, by coupling mode and coordination scheme."""
    made: dict[tuple[str, str], Path] = {}

    def run(mode: str, scheme: str = "none") -> Path:
        if (mode, scheme) not in made:
            output = scenario_file.with_name(f"full_{mode}_{scheme}.h5")
            proc = tandem("run", str(scenario_file), "-o", str(output), "-q", "--scheme", scheme, *COUPLINGS[mode])
            assert proc.returncode == 0, proc.stderr
            made[mode, scheme] = output
        return made[mode, scheme]

    return run


@pytest.fixture(scope="module")
def full_run(full_runs) -> Path:
    return full_runs("loose")


@pytest.mark.parametrize("mode, victim", [("loose", "feeders"), ("iterative", "transmission")])
def test_killed_run_resumes_to_the_uninterrupted_results(scenario_file, full_runs, mode, victim):
    output = scenario_file.with_name(f"killed_{mode}.h5")
    killed = _kill_after_checkpoint([str(scenario_file), "--checkpoint-every", "30min", *COUPLINGS[mode]], output, 5, victim)
    assert killed.returncode == 1, killed.stderr
    assert f"federate '{victim}" in killed.stderr and "was killed by SIGKILL" in killed.stderr
    assert f"continue with: tandem run --resume {output}" in killed.stderr
    with h5py.File(output, "r") as f:
        assert not f.attrs["complete"]
        assert f["checkpoint"].attrs["step"] % 6 == 5  # every 6 steps (30 min)
        assert f["checkpoint"].attrs["rows"] == f["checkpoint"].attrs["step"] + 1
        assert sorted(f["checkpoint"]) == ["feeders", "transmission"]
        before = f["feeders/p_kw"][: f["checkpoint"].attrs["rows"]]
    assert sorted(read_checkpoint(output).states["feeders"]) == ["f123", "f13"]

    resumed = tandem("run", "--resume", str(output), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert not run_processes(output.with_name(output.stem + "_run")), "processes left behind"
    assert_same_results(full_runs(mode), output)
    with h5py.File(output, "r") as f:
        np.testing.assert_array_equal(f["feeders/p_kw"][: len(before)], before)  # rows before the checkpoint kept
        assert f.attrs["resumed_from_step"] == len(before)


@pytest.mark.parametrize("mode, victim", [("loose", "feeders"), ("iterative", "transmission")])
def test_run_with_inverter_controls_resumes_by_replaying_the_feeders(scenario_file, full_runs, mode, victim):
    """Volt-VAR and Volt-Watt (OpenDSS InvControl, scheme `local`) carry state that no API
    reads: the feeders save every input instead and replay them on resume."""
    output = scenario_file.with_name(f"killed_{mode}_local.h5")
    killed = _kill_after_checkpoint([str(scenario_file), "--scheme", "local", "--checkpoint-every", "30min",
                                     *COUPLINGS[mode]], output, 11, victim)
    assert killed.returncode == 1 and f"federate '{victim}" in killed.stderr, killed.stderr
    checkpoint = read_checkpoint(output)
    for name, state in checkpoint.states["feeders"].items():
        solves = [entry for entry in state["journal"] if entry[0] == "solve"]
        assert [entry[1] for entry in solves[:1]] == [0] and solves[-1][1] == checkpoint.step, name
        if mode == "loose":
            assert len(solves) == checkpoint.step + 1, name  # one solve a step
    resumed = tandem("run", "--resume", str(output), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_results(full_runs(mode, "local"), output)
    logs = "".join(p.read_text() for p in (output.with_name(output.stem + "_run") / "logs").glob("feeders_*.log"))
    for name in checkpoint.states["feeders"]:
        assert f"feeder {name}: replayed solve" in logs
    assert "differs" not in logs


def test_centralized_run_resumes_after_the_coordinator_is_killed(tmp_path):
    """The coordinator's look-ahead OPF re-solves warm: the resumed coordinator makes the same
    plans again, so even where an optimum is not unique the same one is found."""
    scenario = ROOT / "runs" / "pv_centralized.yaml"
    full = tmp_path / "full.h5"
    proc = tandem("run", str(scenario), "-o", str(full), "-q", "--duration", "2h")
    assert proc.returncode == 0, proc.stderr
    output = tmp_path / "killed.h5"
    killed = _kill_after_checkpoint([str(scenario), "--duration", "2h", "--checkpoint-every", "30min"], output, 11, "coordinator")
    assert killed.returncode == 1 and "federate 'coordinator'" in killed.stderr, killed.stderr
    with h5py.File(output, "r") as f:
        step = int(f["checkpoint"].attrs["step"])
        assert not f.attrs["complete"] and step >= 11
        assert "coordinator" in f["checkpoint"]
    resumed = tandem("run", "--resume", str(output), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_results(full, output)
    plans = step // 3 + 1  # one after every third step (15 min) from step 0 on
    log = (tmp_path / "killed_run" / "logs" / "coordinator.log").read_text()
    assert f"replayed plan {plans} of {plans}" in log and "differs" not in log


def test_resume_refuses_files_it_cannot_continue(scenario_file, full_run, tmp_path, capsys):
    def refused(*args: str) -> str:
        assert cli_main(["run", *args]) == 2
        return capsys.readouterr().err.strip()

    assert refused("--resume", str(full_run)) == f"error: {full_run}: the run is complete; there is nothing to resume"
    unfinished = tmp_path / "unfinished.h5"
    unfinished.write_bytes(full_run.read_bytes())
    with h5py.File(unfinished, "r+") as f:
        f.attrs["complete"] = False
    assert refused("--resume", str(unfinished)) == f"error: {unfinished}: no checkpoint to resume from (run with --checkpoint-every)"
    assert "drop the scenario file" in refused("--resume", str(unfinished), str(scenario_file))
    assert "time.duration cannot change" in refused("--resume", str(unfinished), "--duration", "1h")
    assert "no such results file" in refused("--resume", str(tmp_path / "missing.h5"))
    with h5py.File(unfinished, "r+") as f:
        write_checkpoint(f, 5, {"transmission": "{}", "feeders": "{}"})
    assert refused("--resume", str(unfinished), "--feeder-processes", "1") == (
        f"error: {unfinished} was run with 2 feeder processes, which a resumed run keeps (got 1)"
    )
    assert not (tmp_path / "unfinished_run").exists()  # nothing was started
    with h5py.File(unfinished, "r") as f:
        assert f["time/seconds"].shape == (72,)  # nor the file cut back


def test_checkpoint_interval_is_checked(scenario_file):
    with pytest.raises(ScenarioError, match="checkpoint_every: .* not a whole number of steps"):
        load_scenario(scenario_file, {"output.checkpoint_every": "7min"})
    scenario = load_scenario(scenario_file, {"output.checkpoint_every": "30min"})
    assert [k for k in range(scenario.time.n_steps) if scenario.is_checkpoint_step(k)] == list(range(5, 71, 6))  # not after 71


def _feeder_rows(model, k: int) -> np.ndarray:
    readings = model.fleet.readings(k)
    p, q = model.substation_power()
    return np.concatenate([p, q, model.node_voltages(), *(np.atleast_1d(v) for v in readings.values())])


@pytest.mark.parametrize("feeder", [0, 1])
def test_feeder_restored_from_its_state_continues_bit_for_bit(scenario_file, feeder):
    """OpenDSS keeps stale element admittances in its matrix and starts each solve from the last
    voltages; the restored feeder rebuilds both, under changing DER set-points."""
    scenario, _ = resolve_scenario(load_scenario(scenario_file, {"time.duration": "12h"}))
    spec = scenario.feeders[feeder]
    n, checkpoint = scenario.time.n_steps, 80
    voltage = [complex(1.0 + 0.01 * np.sin(k / 3), 0.002 * k) for k in range(n)]

    def step(model, k: int) -> np.ndarray:
        if k % 7 == 3:  # set-points now and then, as a coordinator sends them
            rng = np.random.default_rng(k)
            model.fleet.set_setpoints(Setpoints(
                pv={u.name: (float(rng.uniform(0.3, 1.0)), float(rng.uniform(-20, 20))) for u in model.fleet.pv},
                battery={u.name: float(rng.uniform(-50, 50)) for u in model.fleet.batteries},
            ))
        model.run(voltage[k], k)
        return _feeder_rows(model, k)

    original = build_feeder(spec, scenario)
    expected, state = {}, None
    for k in range(n):
        expected[k] = step(original, k)
        if k == checkpoint:
            state = json.dumps(original.state())
        original.end_step()

    restored = build_feeder(spec, scenario)
    assert restored.restore(json.loads(state)) == 0.0  # admittances rebuilt to the bit
    for k in range(checkpoint + 1, n):
        np.testing.assert_array_equal(step(restored, k), expected[k], err_msg=f"step {k}")
        restored.end_step()


def test_feeder_with_inverter_controls_replays_its_journal_bit_for_bit(scenario_file):
    """A feeder under Volt-VAR and Volt-Watt keeps a journal of its inputs when checkpoints are
    on; restored from it (set-points and a second solve within some steps included), it goes on
    to the bit, where restoring the circuit state alone does not (InvControl's own state)."""
    overrides = {"time.duration": "12h", "output.checkpoint_every": "1h", "coordination.scheme": "local"}
    scenario, _ = resolve_scenario(load_scenario(scenario_file, overrides))
    spec = scenario.feeders[1]
    n, checkpoint = scenario.time.n_steps, 80
    voltage = [complex(1.0 + 0.01 * np.sin(k / 3), 0.002 * k) for k in range(n)]

    def step(model, k: int) -> np.ndarray:
        if k % 7 == 3:
            rng = np.random.default_rng(k)
            # PV pairs and [kW, kvar] battery pairs too: the journal keeps them through JSON.
            model.set_setpoints(Setpoints(
                pv={u.name: (float(rng.uniform(0.3, 1.0)), float(rng.uniform(-20, 20))) for u in model.fleet.pv},
                battery={u.name: (float(rng.uniform(-50, 50)), float(rng.uniform(-5, 5))) if k % 2 else float(rng.uniform(-50, 50))
                         for u in model.fleet.batteries},
            ))
        readings = model.step(voltage[k], k)
        if k % 5 == 0:  # a second solve of the step, as iterative coupling makes
            readings = model.step(voltage[k] * 1.001, k)
        return np.concatenate([readings.p_kw, readings.q_kvar, readings.node_vm_pu,
                               *(np.atleast_1d(v) for v in readings.ders.values())])

    original = build_feeder(spec, scenario)
    assert original.journal == [] and original.fleet.inverter_controls
    expected = {}
    for k in range(n):
        expected[k] = step(original, k)
        if k == checkpoint:
            state = json.loads(json.dumps(original.state()))
        original.end_step()
    solves = sum(entry[0] == "solve" for entry in state["journal"])
    assert solves == checkpoint + 1 + checkpoint // 5 + 1

    def differing_steps(restored) -> list[int]:
        differing = []
        for k in range(checkpoint + 1, n):
            if not np.array_equal(step(restored, k), expected[k]):
                differing.append(k)
            restored.end_step()
        return differing

    replayed, heard = build_feeder(spec, scenario), []
    assert replayed.restore(state, lambda done, total: heard.append((done, total))) == 0.0
    assert heard[-1] == (solves, solves)
    assert replayed.journal == [*state["journal"], ["end"]]  # it goes on, for the next checkpoint and resume
    assert differing_steps(replayed) == []
    circuit_only = build_feeder(spec, scenario)
    circuit_only.journal = None
    circuit_only.restore({key: value for key, value in state.items() if key != "journal"})
    assert differing_steps(circuit_only), "InvControl's state made no difference: the journal is not needed"
    with pytest.raises(ValueError, match="unknown journal entry 'jump'"):
        build_feeder(spec, scenario).restore({**state, "journal": [["jump"]]})


def test_transmission_restored_from_its_state_continues_bit_for_bit(scenario_file):
    scenario, _ = resolve_scenario(load_scenario(scenario_file, {"time.duration": "2h"}))
    n, checkpoint = scenario.time.n_steps, 10
    rng = np.random.default_rng(1)
    p, q = 2000 + 300 * rng.random((n, 2)), 500 + 100 * rng.random((n, 2))

    def rows(model) -> np.ndarray:
        vm, va = model.bus_voltages()
        return np.concatenate([vm, va, model.branch_loading(), *model.boundary_load(), [model.generation_cost()]])

    original = TransmissionModel(scenario)
    expected = {}
    for k in range(n):
        if k == 5:
            original.set_dispatch(np.array([30.0, np.nan, 20.0, 10.0, np.nan]))
        original.run(k, p[k], q[k])
        expected[k] = rows(original)
        if k == checkpoint:
            state = json.dumps(original.state())
    restored = TransmissionModel(scenario)
    restored.restore(json.loads(state))
    for k in range(checkpoint + 1, n):
        restored.run(k, p[k], q[k])
        np.testing.assert_array_equal(rows(restored), expected[k], err_msg=f"step {k}")
