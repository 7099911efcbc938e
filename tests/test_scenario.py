"""Scenario loading, network files, load shapes, feeder grouping and results files,
without starting a federation."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
import yaml

from federates.launcher import feeder_groups
from grid.networks import BUILTIN_CASES, load_network
from results.store import ResultsWriter, RunFile, Series
from scenario.schema import ScenarioError, load_scenario
from tandem.study import resolve_scenario
from tests.conftest import SMALL, tandem
from timeseries.profiles import LOAD_SHAPES, load_shape

# MATPOWER's 9-bus case (Anderson & Fouad), the format's usual small example.
CASE9_M = """function mpc = case9
mpc.version = '2';
mpc.baseMVA = 100;
mpc.bus = [
\t1\t3\t0\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
\t2\t2\t0\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
\t3\t2\t0\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
\t4\t1\t0\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
\t5\t1\t90\t30\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
\t6\t1\t0\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
\t7\t1\t100\t35\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
\t8\t1\t0\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
\t9\t1\t125\t50\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;
];
mpc.gen = [
\t1\t72.3\t27.03\t300\t-300\t1.04\t100\t1\t250\t10\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;
\t2\t163\t6.54\t300\t-300\t1.025\t100\t1\t300\t10\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;
\t3\t85\t-10.95\t300\t-300\t1.025\t100\t1\t270\t10\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;
];
mpc.branch = [
\t1\t4\t0\t0.0576\t0\t250\t250\t250\t0\t0\t1\t-360\t360;
\t4\t5\t0.017\t0.092\t0.158\t250\t250\t250\t0\t0\t1\t-360\t360;
\t5\t6\t0.039\t0.17\t0.358\t150\t150\t150\t0\t0\t1\t-360\t360;
\t3\t6\t0\t0.0586\t0\t300\t300\t300\t0\t0\t1\t-360\t360;
\t6\t7\t0.0119\t0.1008\t0.209\t150\t150\t150\t0\t0\t1\t-360\t360;
\t7\t8\t0.0085\t0.072\t0.149\t250\t250\t250\t0\t0\t1\t-360\t360;
\t8\t2\t0\t0.0625\t0\t250\t250\t250\t0\t0\t1\t-360\t360;
\t8\t9\t0.032\t0.161\t0.306\t250\t250\t250\t0\t0\t1\t-360\t360;
\t9\t4\t0.01\t0.085\t0.176\t250\t250\t250\t0\t0\t1\t-360\t360;
];
"""


def _toml_value(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def test_toml_and_yaml_describe_the_same_scenario(tmp_path):
    data = yaml.safe_load(SMALL.read_text())
    lines = [f'name = "{data["name"]}"', f'description = "{data["description"]}"']
    for table in ("transmission", "time", "coupling"):
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in data[table].items()]
    for feeder in data["feeders"]:
        lines.append("[[feeders]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in feeder.items()]
    path = tmp_path / "small.toml"
    path.write_text("\n".join(lines) + "\n")
    tomllib.loads(path.read_text())
    assert load_scenario(path) == load_scenario(SMALL)


def test_default_study_is_the_promised_one():
    scenario = load_scenario(None)
    assert scenario.transmission.network == "case118"
    assert scenario.time.n_steps == 576 and scenario.time.step == pd.Timedelta("5min")
    models = [f.model for f in scenario.feeders]
    assert models.count("ieee13") >= 2 and models.count("ieee123") >= 2
    buses = [f.bus for f in scenario.feeders]
    assert len(set(buses)) == len(buses), "feeders stand at distinct buses"
    resolve_scenario(scenario)  # every bus exists and carries load


def test_overrides_behave_like_keys_in_the_file():
    scenario = load_scenario(SMALL, {"coupling.mode": "loose", "time.duration": "1h", "federation.feeder_processes": 2})
    assert scenario.coupling.mode == "loose" and scenario.time.n_steps == 12
    with pytest.raises(ScenarioError, match="time.step: give a duration with units"):
        load_scenario(SMALL, {"time.step": 60})


def test_iterative_coupling_needs_one_feeder_process():
    with pytest.raises(ScenarioError, match="federation.feeder_processes: iterative coupling runs all feeders in one"):
        load_scenario(SMALL, {"federation.feeder_processes": 2})


def test_network_from_pandapower_json_file_relative_to_the_scenario(tmp_path):
    import pandapower as pp

    pp.to_json(load_network("case30"), str(tmp_path / "grid.json"))
    data = yaml.safe_load(SMALL.read_text())
    data["transmission"]["network"] = "grid.json"
    scenario_path = tmp_path / "scenario.yaml"
    scenario_path.write_text(yaml.safe_dump(data))
    scenario = load_scenario(scenario_path)
    assert scenario.transmission.network == str(tmp_path / "grid.json")
    resolved, buses = resolve_scenario(scenario)
    assert buses == [6, 20, 29]


def test_network_from_matpower_file_matches_the_builtin_case(tmp_path):
    import pandapower as pp

    path = tmp_path / "case9.m"
    path.write_text(CASE9_M)
    from_file, builtin = load_network(str(path)), load_network("case9")
    # pandapower's case9 runs its generators at 1.0 pu; MATPOWER's at 1.04 / 1.025 / 1.025.
    builtin.ext_grid["vm_pu"] = 1.04
    builtin.gen["vm_pu"] = 1.025
    assert len(from_file.bus) == 9 and from_file.load.p_mw.sum() == pytest.approx(315.0)
    pp.runpp(from_file)
    pp.runpp(builtin)
    np.testing.assert_allclose(from_file.res_bus.vm_pu.to_numpy(), builtin.res_bus.vm_pu.to_numpy(), atol=1e-8)
    np.testing.assert_allclose(from_file.res_bus.va_degree.to_numpy(), builtin.res_bus.va_degree.to_numpy(), atol=1e-6)


def test_builtin_case_names_exist_in_pandapower():
    import pandapower.networks as pn

    assert all(hasattr(pn, name) for name in BUILTIN_CASES)


def test_load_shapes_differ_between_weekday_and_weekend_and_interpolate():
    monday = pd.date_range("2024-07-01", periods=24 * 12, freq="5min")  # a Monday
    sunday = monday + pd.Timedelta("6d")
    commercial_mon, commercial_sun = load_shape("commercial", monday), load_shape("commercial", sunday)
    assert commercial_sun.max() < 0.7 * commercial_mon.max()
    residential = load_shape("residential", monday)
    assert residential[19 * 12] == pytest.approx(1.0)  # 19:00, the evening peak
    assert residential[19 * 12 + 6] == pytest.approx((1.00 + 0.96) / 2)  # half way to 20:00
    assert np.all(np.abs(np.diff(residential)) < 0.02), "5-minute steps move smoothly"
    assert set(LOAD_SHAPES) >= {"residential", "commercial", "system", "flat"}
    with pytest.raises(ValueError, match="unknown load profile 'lunar'"):
        load_shape("lunar", monday)


def test_feeder_groups_split_round_robin():
    assert feeder_groups(5, 2, iterative=False) == [[0, 2, 4], [1, 3]]
    assert feeder_groups(3, 8, iterative=False) == [[0], [1], [2]]
    assert feeder_groups(8, "auto", iterative=True) == [list(range(8))]
    groups = feeder_groups(8, "auto", iterative=False)
    assert sorted(i for g in groups for i in g) == list(range(8)) and len(groups) >= 1


WRITE_AND_DIE = """
import os, sys
import numpy as np
from results.store import ResultsWriter, Series
writer = ResultsWriter(sys.argv[1], '{"time": {}}', "name: x", n_steps=100, block_rows=4)
writer.add_series(Series("feeders/p_kw", (2, 3), "kW", ("feeder", "phase"), "power"))
for k in range(10):
    writer.append(k * 60.0, {"feeders/p_kw": np.full((2, 3), float(k))})
os._exit(9)  # dies without closing the file
"""


def test_results_file_of_a_process_that_died_is_readable(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "partial.h5"
    died = subprocess.run([sys.executable, "-c", WRITE_AND_DIE, str(path)], cwd=SMALL.parents[1])
    assert died.returncode == 9
    with RunFile(path) as run:
        assert not run.complete and run.error == ""
        assert run.n_steps == 8, "the two whole blocks written before the end"
        assert run.read("feeders/p_kw")[:, 0, 0].tolist() == list(map(float, range(8)))
        assert run.units("feeders/p_kw") == "kW"


def test_results_writer_finishes_with_the_error_and_rejects_incomplete_rows(tmp_path):
    writer = ResultsWriter(tmp_path / "r.h5", "{}", "", n_steps=3)
    writer.add_series(Series("coupling/iterations", (), "", (), "iterations", "i4"))
    writer.append(0.0, {"coupling/iterations": 2})
    with pytest.raises(KeyError, match="lacks"):
        writer.append(60.0, {"something/else": 1.0})
    writer.finish(complete=False, error="federate 'x' failed")
    with RunFile(tmp_path / "r.h5") as run:
        assert run.n_steps == 1 and not run.complete and run.error == "federate 'x' failed"
        assert run.read("coupling/iterations").tolist() == [2]


def test_run_help_explains_every_option():
    proc = tandem("run", "--help", timeout=60)
    assert proc.returncode == 0
    for option in ("--output", "--coupling", "--tolerance", "--max-iterations", "--duration", "--step",
                   "--feeder-processes", "--broker-port", "--observers", "--show-scenario", "--quiet"):
        assert option in proc.stdout


def test_scenario_relative_paths_resolve_against_the_scenario_folder(tmp_path):
    sub = tmp_path / "study"
    sub.mkdir()
    (sub / "feeder.dss").write_text("New Circuit.tiny basekv=12.47 phases=3\n")
    data = yaml.safe_load(SMALL.read_text())
    data["feeders"][0]["model"] = "feeder.dss"
    (sub / "s.yaml").write_text(yaml.safe_dump(data))
    assert load_scenario(sub / "s.yaml").feeders[0].model == str(sub / "feeder.dss")


def test_network_summary_is_cached_and_follows_file_changes(tmp_path, monkeypatch):
    import pandapower as pp

    from grid.networks import NetworkSummary, network_summary

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "grid.json"
    net = load_network("case30")
    pp.to_json(net, str(path))
    first = network_summary(str(path))
    assert first == NetworkSummary.of(net) and first.load_at(6) == pytest.approx(22.8)
    assert len(list((tmp_path / "cache" / "tandem" / "networks").glob("grid-*.json"))) == 1
    assert network_summary(str(path)) == first  # from the cache
    net.load.loc[net.load.bus == 6, "p_mw"] = 50.0
    pp.to_json(net, str(path))  # a changed file is a new key
    assert network_summary(str(path)).load_at(6) == pytest.approx(50.0)


def test_diversity_by_scaling_alone_and_clean_profile_errors():
    scenario = load_scenario(SMALL, {"feeders": [{"name": "f", "model": "ieee13", "bus": 6,
                                                  "load_diversity": {"max_shift": "0min"}}]})
    assert scenario.feeders[0].load_diversity.max_shift == pd.Timedelta(0)
    with pytest.raises(ScenarioError) as err:
        load_scenario(SMALL, {"feeders": [{"name": "f", "model": "ieee13", "bus": 6, "load_profile": "lunar"}]})
    assert str(err.value).endswith("feeders.0.load_profile: unknown load profile 'lunar'; built-in profiles: residential, commercial, system, flat")
