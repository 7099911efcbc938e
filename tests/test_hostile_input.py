"""Hostile or surprising input (issue #14, items 7-9): each gives one line naming the culprit
and a non-zero exit before anything starts, or a warning, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, rows_written, tandem

SCENARIO = """name: {name}
transmission: {{network: case30}}
feeders:
  - {{name: f13, model: {model}, bus: 6}}
time: {{duration: 5min, step: 5min}}
"""


def _scenario(tmp_path: Path, name: str = "hostile", model: str = "ieee13", extra: str = "", suffix: str = ".yaml") -> Path:
    path = tmp_path / f"scenario{suffix}"
    path.write_text(SCENARIO.format(name=name, model=model) + extra)
    return path


def _one_line_error(result, *parts: str) -> str:
    """The run failed with exit 2 and a one-line error holding every part (no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _refused(path: Path, *parts: str) -> str:
    """Validating the scenario raises ScenarioError: one line holding every part."""
    from scenario.schema import ScenarioError, load_scenario

    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


@pytest.mark.parametrize("suffix, text", [(".json", "["), (".yaml", "- "), (".yaml", "{a: ")])
def test_deeply_nested_file_is_refused(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text(text * 200_000)
    _refused(path, str(path), "nested too deeply")


def test_binary_csv_profile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "load.csv").write_bytes(bytes(range(256)) * 40)
    path = _scenario(tmp_path)
    path.write_text(path.read_text().replace("bus: 6}", "bus: 6, load_profile: {file: load.csv}}"))
    _refused(path, "load.csv", "not a readable CSV file")


@pytest.mark.parametrize("name", ["/tmp/escaped", "../../../escaped", "a/b", ".hidden", "a\\b"])
def test_scenario_name_cannot_leave_the_output_folder(tmp_path: Path, name: str) -> None:
    _refused(_scenario(tmp_path, name=f'"{name}"'), "name:", "file name")


@pytest.mark.parametrize("timeout", ["1e-9", "0.5"])
def test_tiny_federation_timeout_is_refused(tmp_path: Path, timeout: str) -> None:
    _refused(_scenario(tmp_path, extra=f"federation: {{timeout_s: {timeout}}}\n"), "federation.timeout_s")


def test_run_too_big_for_memory_is_refused_before_starting(tmp_path: Path) -> None:
    """A century at 1 s steps (over 2 TB): refused before anything starts, naming the steps and
    both memory figures (365 days at 1 s died of memory after 46 s of start-up)."""
    from scenario.schema import ScenarioError, load_scenario
    from tandem.study import prepare_run

    scenario = load_scenario(_scenario(tmp_path), overrides={"time.duration": "36500d", "time.step": "1s"})
    out = tmp_path / "big.h5"
    with pytest.raises(ScenarioError) as caught:
        prepare_run(scenario, output=out)
    for part in ("3,153,600,000 steps", "36500d at 1s", "GB of memory", "GB available"):
        assert part in str(caught.value), caught.value
    assert not out.with_name("big_run").exists()  # nothing was started or written


def test_memory_estimate_is_a_lower_bound_of_the_default_study() -> None:
    """The estimate never refuses the studies the project ships (a few MB)."""
    from scenario.schema import load_scenario
    from tandem.sizing import count_loads, memory_estimate

    assert count_loads("ieee13") == 15 and count_loads("ieee123") >= 85
    assert memory_estimate(load_scenario(None), 2) < 50e6


def test_load_on_unconnected_bus_warns_with_its_node(tmp_path: Path) -> None:
    """A load on a bus nothing connects records 0 pu all run: the run says so at start-up."""
    feeder = tmp_path / "f"
    shutil.copytree(ROOT / "feeder_models" / "ieee13", feeder)
    master = feeder / "master.dss"
    text = master.read_text()
    # Before CalcVoltageBases, so OpenDSS lists the bus (unconnected) and the run goes on.
    master.write_text(text.replace("Redirect loads.dss", "Redirect loads.dss\nNew Load.ghost Bus1=nowhere.1 Phases=1 kV=2.4 kW=100"))
    path = _scenario(tmp_path, model="f/master.dss")
    result = tandem("run", str(path), "-o", str(tmp_path / "out.h5"), "-q", timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: feeder f13: 1 node(s) at 0 pu" in result.stderr and "nowhere.1" in result.stderr, result.stderr


def test_load_on_unlisted_bus_is_one_line_error(tmp_path: Path) -> None:
    """A load on a bus named only after CalcVoltageBases: OpenDSS's "No active bus found!" named."""
    from grid.errors import FeederModelError
    from grid.feeder import FeederModel

    feeder = tmp_path / "f"
    shutil.copytree(ROOT / "feeder_models" / "ieee13", feeder)
    master = feeder / "master.dss"
    master.write_text(master.read_text() + "\nNew Load.ghost Bus1=nowhere.1 Phases=1 kV=2.4 kW=100\n")
    with pytest.raises(FeederModelError, match="load ghost is on bus 'nowhere', which no line or transformer connects"):
        FeederModel("f", str(master))


def test_second_run_refuses_and_a_hung_broker_is_blamed(tmp_path: Path) -> None:
    """Items 8 and 9, on one running study: a second run given its -o, or its fixed
    --broker-port, fails at once naming why, and the first goes on untouched. Then its broker
    stops answering (SIGSTOP): the broker is named, not the federate that timed out first (it
    was blamed on `transmission`), and "after step k" is the 0-based index of the last step
    recorded, with the count, as checkpoint messages have it."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    from federates.launcher import free_port
    from tests.conftest import SMALL, processes_mentioning, run_processes

    port = str(free_port())
    scenario = tmp_path / "small.yaml"
    scenario.write_text(SMALL.read_text() + "\nfederation: {timeout_s: 3}\n")  # a stopped broker is noticed in seconds
    out, run_dir = tmp_path / "first.h5", tmp_path / "first_run"
    first = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "run", str(scenario), "--duration", "20d", "--broker-port", port, "-q", "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    broker = None
    try:
        deadline = time.monotonic() + 240
        while rows_written(out) < 3:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.2)
        config = (run_dir / "federation.json").read_text()

        same_output = tandem("run", str(SMALL), "-q", "-o", str(out), timeout=120)
        assert same_output.returncode == 1, same_output.stderr
        assert f"error: {out} is being written by another run (tandem pid {first.pid})" in same_output.stderr

        other = tmp_path / "second.h5"
        same_port = tandem("run", str(SMALL), "-q", "--broker-port", port, "-o", str(other), timeout=120)
        assert same_port.returncode == 1, same_port.stderr
        assert f"error: federation.broker_port: port {port} on 127.0.0.1 is in use" in same_port.stderr
        assert not other.exists() and not processes_mentioning(str(tmp_path / "second_run"))

        # The first run is untouched: still running, its folder as it wrote it.
        assert first.poll() is None, first.communicate()[1][-2000:]
        assert (run_dir / "federation.json").read_text() == config
        broker = _broker_pid(run_dir)
        os.kill(broker, signal.SIGSTOP)
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
        if broker is not None:
            try:
                os.kill(broker, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert first.returncode == 1, stderr
    line = next(line for line in stderr.splitlines() if line.startswith("error: "))
    assert line.startswith(f"error: the HELICS broker (pid {broker}) is stopped (SIGSTOP?) and stopped answering its federates"), stderr
    found = re.search(r"after step (\d+) \((\d+) of 5760 steps recorded\)", line)
    assert found and int(found.group(2)) == int(found.group(1)) + 1, stderr
    assert not run_processes(run_dir), "processes left behind"


def _broker_pid(run_dir: Path) -> int | None:
    """The pid of a run's HELICS broker, found by its port, once it runs."""
    import json

    from tests.conftest import processes_mentioning

    try:
        port = json.loads((run_dir / "federation.json").read_text())["broker"]["port"]
    except (OSError, ValueError, KeyError):
        return None
    found = [line for line in processes_mentioning(f"--port={port} ") if "helics_broker" in line]
    return int(found[0].split(":")[0]) if found else None


def test_interrupted_before_any_results_does_not_claim_partial_results(tmp_path: Path) -> None:
    """Item 8: Ctrl-C while the run waits for an observer says "partial results were kept" only
    when a readable results file holds them."""
    import signal
    import subprocess
    import sys
    import time

    import h5py

    from tests.conftest import SMALL, run_processes

    out, run_dir = tmp_path / "waiting.h5", tmp_path / "waiting_run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "run", str(SMALL), "--observers", "1", "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _broker_pid(run_dir) is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    try:
        with h5py.File(out, "r"):
            readable = True
    except OSError:
        readable = False
    assert ("partial results were kept" in stderr) == readable, stderr
    if not readable:
        assert "no results file was written" in stderr or "was left unreadable" in stderr, stderr
    assert not run_processes(run_dir), "processes left behind"


def _pandapower_network_functions() -> set[str]:
    """Every network function of the installed pandapower that needs no argument."""
    import inspect

    import pandapower.networks as pn

    found = set()
    for name, function in inspect.getmembers(pn, inspect.isfunction):
        if name.startswith("_") or not function.__module__.startswith("pandapower.networks"):
            continue
        parameters = inspect.signature(function).parameters.values()
        if all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters):
            found.add(name)
    return found


def test_every_pandapower_network_function_is_accepted() -> None:
    """Item 14: case1354pegase, case2869pegase, GBnetwork, ... were rejected; the static list
    (validation imports no pandapower) is every network function pandapower ships."""
    from scenario.schema import BUILTIN_CASES

    assert set(BUILTIN_CASES) == _pandapower_network_functions()


@pytest.mark.parametrize("network", ["case1354pegase", "case2869pegase", "GBnetwork", "mv_oberrhein",
                                     "simbench:1-HV-mixed--0-no_sw", "simbench:1-LV-rural1--0-sw",
                                     "simbench:1-HVMV-mixed-1.105-0-sw"])
def test_network_names_validate_without_pandapower(tmp_path: Path, network: str) -> None:
    from scenario.schema import load_scenario

    path = _scenario(tmp_path)
    path.write_text(path.read_text().replace("network: case30", f"network: '{network}'"))
    assert load_scenario(path).transmission.network == network


@pytest.mark.parametrize("network, hint", [("Case118", "did you mean 'case118'?"), ("simbench:HV-mixed", "not a SimBench code"),
                                           ("create_empty_network", "unknown network")])
def test_unknown_network_names_are_refused(tmp_path: Path, network: str, hint: str) -> None:
    path = _scenario(tmp_path)
    path.write_text(path.read_text().replace("network: case30", f"network: '{network}'"))
    _refused(path, "transmission.network", hint)


def test_validating_imports_no_pandapower(tmp_path: Path) -> None:
    """The feeder and recorder processes validate the scenario too: never with pandapower."""
    import subprocess
    import sys

    path = _scenario(tmp_path)
    path.write_text(path.read_text().replace("network: case30", "network: 'simbench:1-HV-mixed--0-no_sw'"))
    code = (f"import sys; from scenario.schema import load_scenario; load_scenario({str(path)!r}); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('pandapower', 'simbench')]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_simbench_grid_loads_by_code() -> None:
    """A SimBench grid's summary (what the launcher checks feeders against) comes from its code."""
    simbench = pytest.importorskip("simbench")
    from grid.networks import load_network
    from scenario.schema import _SIMBENCH_CODE

    assert all(_SIMBENCH_CODE.fullmatch(code) for code in simbench.collect_all_simbench_codes())
    net = load_network("simbench:1-LV-rural1--0-no_sw")
    assert len(net.bus) > 10 and len(net.load) > 5
