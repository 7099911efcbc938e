"""Hostile or surprising input (issue #14, items 7-9): each gives one line naming the culprit
and a non-zero exit before anything starts, or a warning, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, tandem

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
