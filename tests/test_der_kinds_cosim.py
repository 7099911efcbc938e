"""The two DER kinds added through the kinds tables (dispatchable generators, flexible loads),
end to end: simulated in OpenDSS, dispatched by every coordination scheme through the
set-point message, recorded, in the KPIs and the report. Real broker, federates, solvers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from scenario.schema import load_scenario
from tandem.kpis import kpis
from tandem.study import run_study

SCHEMES = ["centralized", "tso_managed", "hybrid", "dso_managed", "dso_first", "admm"]
# A genset cheaper than every generator of case30 (marginal costs 1.0-5 per MWh) is worth
# running at full output in every period; so a scheme that dispatches it sends the rating.
DG_COST = 0.1


def _scenario(tmp_path, scheme: str) -> str:
    data = {
        "name": f"kinds_{scheme}",
        "transmission": {"network": "case30"},
        "feeders": [{
            "name": "f13", "model": "ieee13", "bus": 6, "multiplier": 5, "bus_load": "add",
            "load_profile": "commercial",
            "dg": {"penetration": 0.1, "count": 2, "cost_per_mwh": [DG_COST]},
            "flexible_load": {"penetration": 0.2, "count": 3, "shift_price": 0.1, "up_pu": 0.3, "down_pu": 0.3},
        }],
        "time": {"start": "2024-07-01T16:00:00", "duration": "1h", "step": "5min"},
        "coordination": {"scheme": scheme, "interval": "15min", "horizon": "1h"},
    }
    path = tmp_path / f"{scheme}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _run(tmp_path, scheme: str):
    output = tmp_path / f"{scheme}.h5"
    run_study(load_scenario(_scenario(tmp_path, scheme)), output=output)
    return output


@pytest.fixture(scope="module")
def uncoordinated(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("none"), "none")


def test_without_a_coordinator_gensets_stay_off_and_flexible_loads_on_their_baseline(uncoordinated):
    with h5py.File(uncoordinated) as f:
        assert f.attrs["complete"]
        np.testing.assert_array_equal(f["feeders/dg_kw"][()], 0.0)
        np.testing.assert_array_equal(f["feeders/flexible_load_shift_kw"][()], 0.0)
        assert (f["feeders/flexible_load_kw"][()] > 0).all()
        assert list(f["devices/f13/dg"].asstr()[()]) == ["dg_0", "dg_1"]
        assert f["devices/f13/flexible_load_unit_shift_kw"].shape == (12, 3)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_dispatches_gensets_and_flexible_loads(tmp_path, uncoordinated, scheme):
    run = _run(tmp_path, scheme)
    with h5py.File(run) as f, h5py.File(uncoordinated) as base:
        assert f.attrs["complete"]
        status = f["coordinator/status"][()]
        assert (status[status >= 0] == 0).all(), status
        terms = list(f["coordinator/term"].asstr()[()])
        assert "dg_generation" in terms and "load_shift" in terms
        rating = sum(_dg_ratings(base))
        dg = f["feeders/dg_kw"][()][:, 0]
        dispatch = f["devices/f13/dg_dispatch_kw"][()]
        # Set-points arrive after the first plan: from then on the gensets run at their rating.
        assert dg[0] == 0.0
        np.testing.assert_allclose(dispatch[1:].sum(axis=1), rating, rtol=1e-6)
        np.testing.assert_allclose(dg[1:], dispatch[1:].sum(axis=1), rtol=1e-3)  # OpenDSS delivers what was dispatched
        # Against the run without them, the substation supplies about what the gensets deliver
        # less, net of what the flexible loads moved up. Not exactly: losses fall, and the
        # coordinator also re-dispatches the transmission, so the feeder sees another voltage
        # and IEEE 13's voltage-dependent loads draw otherwise (the exact per-step energy balance
        # is tests/test_ders.py's).
        saved = base["feeders/p_total_kw"][()][1:, 0] - f["feeders/p_total_kw"][()][1:, 0]
        moved = f["feeders/flexible_load_shift_kw"][()][1:, 0]
        np.testing.assert_allclose(saved + moved, dg[1:], rtol=0.08)
        # The flexible loads' energy owed is the running sum of what they moved.
        owed = f["feeders/flexible_load_owed_kwh"][()][:, 0]
        np.testing.assert_allclose(owed, -np.cumsum(f["feeders/flexible_load_shift_kw"][()][:, 0]) * 5 / 60, atol=1e-9)
    values = kpis(run)
    assert values["dg_kWh_per_copy"] == pytest.approx(dg.sum() * 5 / 60)


def _dg_ratings(file: h5py.File) -> list[float]:
    """The gensets' ratings as the run placed them (the same seeded placement, rebuilt)."""
    import json

    from grid.feeder import build_feeder
    from scenario.schema import Scenario

    scenario = Scenario.model_validate(json.loads(file.attrs["scenario"]))
    return [u.kw_rated for u in build_feeder(scenario.feeders[0], scenario).fleet.units("dg")]
