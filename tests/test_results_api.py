"""Reading runs: labelled arrays through results.dataset, and `tandem inspect`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import results.dataset
from results.store import ResultsWriter, Series
from tests.conftest import SMALL
from tests.conftest import tandem as run_tandem


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "small.h5"
    proc = run_tandem("run", str(SMALL), "--duration", "1h", "-q", "-o", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    return out


def test_variables_come_labelled_with_times_and_names(small_run):
    with results.dataset.open(small_run) as run:
        assert run.complete and run.n_steps == 12
        vmin = run["feeders/vmin_pu"]
        assert vmin.dims == ("time", "feeder") and vmin.attrs["units"] == "pu"
        assert list(vmin.feeder.values) == ["ieee13_at_6", "ieee123_at_20", "ieee13_at_29"]
        assert vmin.time.values[0] == np.datetime64("2024-01-15T14:00:00")
        assert pd.Timedelta(vmin.time.values[1] - vmin.time.values[0]) == pd.Timedelta("5min")
        power = run["feeders/p_kw"]
        assert list(power.phase.values) == ["a", "b", "c"]
        np.testing.assert_allclose(power.sum("phase").values, run["feeders/p_total_kw"].values, rtol=1e-12)
        boundary = run["boundary/vm_pu"]
        assert list(boundary.boundary.values) == [6, 20, 29]
        assert run["transmission/vm_pu"].sizes["bus"] == 30
        ds = run.dataset(["boundary/vm_pu", "coupling/iterations"])
        assert set(ds.data_vars) == {"boundary/vm_pu", "coupling/iterations"}
        with pytest.raises(KeyError, match="no dataset 'feeders/nothing'"):
            run["feeders/nothing"]


def test_one_variable_reads_only_that_variable(small_run, monkeypatch):
    read = []
    with results.dataset.open(small_run) as run:
        original = run.read
        monkeypatch.setattr(run, "read", lambda name: read.append(name) or original(name))
        run["boundary/vm_pu"]
        assert read == ["boundary/vm_pu", "time/seconds", "boundary/bus"], "only the variable, the time axis and its labels"
        read.clear()
        run["boundary/p_mw"]
        assert read == ["boundary/p_mw", "boundary/bus"], "the time axis is read once"


def test_the_time_axis_is_the_recorded_seconds_after_the_start(tmp_path):
    path = tmp_path / "t.h5"
    writer = ResultsWriter(path, '{"name": "t", "time": {"start": "2024-01-01T06:00:00", "step": "PT1M"}}', "", n_steps=3)
    writer.add_series(Series("coupling/iterations", (), "", (), "iterations", "i4"))
    for k, seconds in enumerate((0.0, 60.0, 7200.0)):  # a gap: the axis is what was recorded
        writer.append(seconds, {"coupling/iterations": k})
    writer.finish(complete=True)
    with results.dataset.open(path) as run:
        assert list(run.times) == [pd.Timestamp("2024-01-01 06:00"), pd.Timestamp("2024-01-01 06:01"),
                                   pd.Timestamp("2024-01-01 08:00")]
        assert run.step == pd.Timedelta("1min") and run.step_hours == 1 / 60
        assert (run["coupling/iterations"].time.values == run.times.values).all()
        with pytest.raises(ValueError, match="read-only"):
            run.read("coupling/iterations")[0] = 5  # shared by every reader of the open file


def test_an_interrupted_run_reads_and_says_so(tmp_path):
    path = tmp_path / "cut.h5"
    writer = ResultsWriter(path, '{"name": "cut", "time": {"start": "2024-01-01T00:00:00", "step": "PT1M"}}', "", n_steps=10)
    writer.add_series(Series("coupling/iterations", (), "", (), "iterations", "i4"))
    for k in range(4):
        writer.append(k * 60.0, {"coupling/iterations": k + 1})
    writer.finish(complete=False, error="federate 'feeders_0' was killed by SIGKILL after step 4")
    with results.dataset.open(path) as run:
        assert not run.complete and "SIGKILL" in run.error
        assert run["coupling/iterations"].values.tolist() == [1, 2, 3, 4]
    proc = run_tandem("inspect", str(path), timeout=60)
    assert proc.returncode == 0
    assert "INCOMPLETE (federate 'feeders_0' was killed by SIGKILL after step 4)" in proc.stdout
    assert "steps:       4 of 10" in proc.stdout


def test_inspect_lists_scenario_versions_and_datasets(small_run):
    proc = run_tandem("inspect", str(small_run), timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "scenario:    small_iterative" in out and "state:       complete" in out
    assert "helics 3.6.1" in out and "pandapower 3.5.6" in out
    assert "feeders/p_kw" in out and "12x3x3" in out and "[time,feeder,phase]" in out
    missing = run_tandem("inspect", str(small_run.with_name("nope.h5")), timeout=60)
    assert missing.returncode == 2 and "results file not found" in missing.stderr
