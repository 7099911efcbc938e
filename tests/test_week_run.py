"""A week at 1-minute steps from built-in profiles: IEEE 123 with 50 % PV and batteries
through the real co-simulation, checked on what it recorded."""

from __future__ import annotations

import numpy as np
import pytest

from results.store import RunFile
from tests.conftest import ROOT, run_processes, tandem

WEEK = ROOT / "runs" / "ieee123_pv_week.yaml"


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    out = tmp_path_factory.mktemp("week") / "week.h5"
    proc = tandem("run", str(WEEK), "-q", "-o", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert not run_processes(out.with_name("week_run"))
    return out


def test_the_week_completes_with_every_minute_recorded(week):
    with RunFile(week) as run:
        assert run.complete and run.n_steps == 7 * 24 * 60
        np.testing.assert_array_equal(run.read("time/seconds"), np.arange(run.n_steps) * 60.0)
        pv_available, pv = run.read("feeders/pv_available_kw")[:, 0], run.read("feeders/pv_kw")[:, 0]
        # Delivered never exceeds available beyond the power-flow tolerance (ppm, or a watt at night).
        assert pv_available.max() > 0 and np.all(pv <= pv_available * (1 + 1e-5) + 1e-3)
        day = np.arange(run.n_steps) % 1440
        assert pv_available[(day < 240) | (day > 1320)].max() == 0.0, "no sun at night"
        taps = run.read("devices/ieee123/regulator_taps")
        assert (np.diff(taps, axis=0) != 0).any(), "regulators act over a week"
        assert run.read("feeders/nodes_outside_band").dtype.kind == "i"


def test_battery_bookkeeping_closes_over_the_week(week):
    with RunFile(week) as run:
        soc = run.read("devices/ieee123/battery_soc")
        dispatch = run.read("devices/ieee123/battery_dispatch_kw")
        kwh = run.read("devices/ieee123/battery_kwh")
        terminal = run.read("feeders/battery_kw")[:, 0]
        scenario = run.scenario["feeders"][0]["battery"]
    eta_c, eta_d = scenario["efficiency_charge"], scenario["efficiency_discharge"]
    booked = np.where(dispatch > 0, -dispatch / eta_d, -dispatch * eta_c) / 60.0  # kWh per minute step
    start = scenario["soc_initial"]
    stored = (soc - np.vstack([np.full(soc.shape[1], start), soc[:-1]])) * kwh
    np.testing.assert_allclose(stored, booked, rtol=0, atol=1e-6)
    np.testing.assert_allclose((soc[-1] - start) * kwh, booked.sum(axis=0), rtol=0, atol=1e-6)
    assert soc.min() >= scenario["soc_min"] - 1e-9 and soc.max() <= scenario["soc_max"] + 1e-9
    np.testing.assert_allclose(terminal, dispatch.sum(axis=1), rtol=1e-3, atol=1e-2)
