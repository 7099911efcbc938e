"""Real branch ratings (#14 item 15): `transmission.ratings: pglib` gives case118 PGLib-OPF's
published rate_a without changing any power flow, the coordinator's DC-OPF and the recorded
loadings use them, and the network then congests where pandapower's 9900 MVA never does."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from grid.networks import load_network
from grid.ratings import PGLIB_RATINGS, apply_ratings, read_table
from scenario.schema import ScenarioError, load_scenario


def solved(ratings: str):
    import pandapower as pp

    net = load_network("case118")
    apply_ratings(net, ratings, "case118")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, numba=False)
    return net


def test_pglib_ratings_change_limits_not_flows():
    from coordination.network_data import transmission_data

    case, rated = solved("case"), solved("pglib")
    # The same power flow to round-off: a transformer's impedance in ohms is kept as sn_mva changes.
    np.testing.assert_allclose(rated.res_bus.vm_pu, case.res_bus.vm_pu, atol=1e-9)
    np.testing.assert_allclose(rated.res_bus.va_degree, case.res_bus.va_degree, atol=1e-7)
    np.testing.assert_allclose(rated.res_line.p_from_mw, case.res_line.p_from_mw, atol=1e-7)
    np.testing.assert_allclose(rated.res_trafo.p_hv_mw, case.res_trafo.p_hv_mw, atol=1e-7)
    # Every one of the 186 branches carries its PGLib rate_a into the coordinator's data: the sum
    # and the multiset of ratings are the table's.
    table = read_table(PGLIB_RATINGS["case118"])
    assert len(table) == 186
    ratings = sorted(b.rating_mw for b in transmission_data(rated).branches)
    assert ratings == pytest.approx(sorted(row["rate_a_mva"] for row in table), rel=1e-12)
    assert all(b.rating_mw == pytest.approx(9900.0) for b in transmission_data(case).branches)
    # pandapower's loading is then against rate_a: on a 138 kV line, |I| sqrt(3) 138 kV / rate_a.
    line = int(np.argmax(rated.res_line.loading_percent.to_numpy()))
    kv = rated.bus.vn_kv.at[int(rated.line.from_bus.iloc[line])]
    current = rated.res_line[["i_from_ka", "i_to_ka"]].iloc[line].max()
    rate = np.sqrt(3) * kv * rated.line.max_i_ka.iloc[line]
    assert rated.res_line.loading_percent.iloc[line] == pytest.approx(100 * np.sqrt(3) * kv * current / rate, rel=1e-9)
    # At the case's own operating point one line is over its rating already; unrated, nothing is near.
    assert rated.res_line.loading_percent.max() > 100.0
    assert case.res_line.loading_percent.max() < 10.0 and case.res_trafo.loading_percent.max() < 10.0


def test_pglib_ratings_only_where_known():
    with pytest.raises(ScenarioError, match="'pglib' are known for case118 only, not network 'case30'"):
        load_scenario(None, {"transmission.network": "case30", "transmission.ratings": "pglib"})
    assert load_scenario(None).transmission.ratings == "case"  # the default study is unchanged


def test_congested_study_is_rated_around_its_congested_line():
    """runs/congested_118.yaml puts its feeders at the two ends of line 89-92, the line the case's
    own operating point loads past its PGLib rating (test above)."""
    from tests.conftest import ROOT

    scenario = load_scenario(ROOT / "runs" / "congested_118.yaml")
    assert scenario.transmission.ratings == "pglib" and scenario.transmission.network == "case118"
    net = load_network("case118")
    line = net.line[(net.line.from_bus == 88) & (net.line.to_bus == 91)]
    assert len(line) == 2 and {int(f.bus) for f in scenario.feeders} == {89, 91}  # two circuits, 186 and 166 MVA
    assert all(f.pv.penetration == 1.0 and f.battery.penetration > 0 for f in scenario.feeders)
