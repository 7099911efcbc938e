"""Transmission results read from the solved voltages (grid/pf_results.py) against
pandapower's own result tables and a fresh, full pandapower solve."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from grid.errors import PowerFlowError
from grid.networks import load_network
from grid.pf_results import PowerFlowResults, ResultReader
from grid.transmission import TransmissionModel
from scenario.schema import load_scenario
from tandem.study import resolve_scenario
from tests.conftest import SMALL


def _runpp(net) -> None:
    import pandapower as pp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, numba=False)


@pytest.mark.parametrize("case", ["case9", "case14", "case30", "case39", "case57", "case118", "case300"])
def test_results_from_the_voltages_equal_pandapowers_tables(case):
    net = load_network(case)
    _runpp(net)
    reader = ResultReader(net)
    assert reader.supported()
    ours, theirs = reader.read(net), PowerFlowResults.from_tables(net)
    assert ours.disagreement(theirs) == ""
    # the quantities that carry the arithmetic, spelled out
    np.testing.assert_allclose(ours.line_loading, net.res_line.loading_percent, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.trafo_loading, net.res_trafo.loading_percent, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.p_mw["ext_grid"], net.res_ext_grid.p_mw, rtol=1e-9, atol=1e-9)
    assert np.max(ours.line_loading) > 1  # loaded lines, not zeros compared with zeros


def test_a_disagreement_is_named():
    net = load_network("case14")
    _runpp(net)
    ours = ResultReader(net).read(net)
    ours.trafo_loading = ours.trafo_loading * (1 + 1e-6)
    assert ours.disagreement(PowerFlowResults.from_tables(net)) == "trafo loading"


def test_model_steps_agree_with_a_full_solve_and_balance_power():
    scenario, _ = resolve_scenario(load_scenario(SMALL, {"time.duration": "1h"}))
    model = TransmissionModel(scenario)
    assert model._reader is not None, "results from the voltages were not taken up"
    assert model.net._options["only_v_results"]
    rng = np.random.default_rng(7)
    n_feeders = len(scenario.feeders)
    for k in range(scenario.time.n_steps):
        if k == 4:  # a coordinator's generator dispatch
            model.set_dispatch(np.array([30.0, np.nan, 20.0, 10.0, np.nan]))
        model.run(k, 2000 + 600 * rng.random(n_feeders), 400 + 200 * rng.random(n_feeders))
        reference = copy.deepcopy(model.net)
        reference._options["only_v_results"] = False
        _runpp(reference)  # from scratch: no recycled model, pandapower's own tables
        vm, va = model.bus_voltages()
        np.testing.assert_allclose(vm, reference.res_bus.vm_pu, atol=1e-8, err_msg=f"step {k}")
        np.testing.assert_allclose(va, reference.res_bus.va_degree, atol=1e-6, err_msg=f"step {k}")
        expected_loading = np.concatenate([reference.res_line.loading_percent, reference.res_trafo.loading_percent])
        np.testing.assert_allclose(model.branch_loading(), expected_loading, rtol=1e-6, atol=1e-6, err_msg=f"step {k}")
        own = model._n_own_loads
        p_load, q_load = model.boundary_load()
        np.testing.assert_allclose(p_load, reference.res_load.p_mw.to_numpy()[own:], atol=1e-12)
        np.testing.assert_allclose(q_load, reference.res_load.q_mvar.to_numpy()[own:], atol=1e-12)
        # power balance: the units produce the load plus the branch losses
        produced = sum(model.results.p_mw[t].sum() for t in ("ext_grid", "gen", "sgen"))
        losses = reference.res_line.pl_mw.sum() + reference.res_trafo.pl_mw.sum()
        assert produced == pytest.approx(reference.res_load.p_mw.sum() + losses + reference.res_shunt.p_mw.sum(), abs=1e-6)
        np.testing.assert_allclose(model.results.p_mw["gen"], reference.res_gen.p_mw, atol=1e-6)
        assert model.generation_cost() == pytest.approx(_cost(reference), rel=1e-9)


def _cost(net) -> float:
    total = 0.0
    for _, row in net.poly_cost.iterrows():
        p = float(net[f"res_{row.et}"].p_mw.at[row.element])
        total += row.cp0_eur + row.cp1_eur_per_mw * p + row.cp2_eur_per_mw2 * p * p
    return total


def test_a_power_flow_that_diverges_after_the_first_solve_is_an_error():
    scenario, _ = resolve_scenario(load_scenario(SMALL, {"time.duration": "1h"}))
    model = TransmissionModel(scenario)
    n_feeders = len(scenario.feeders)
    model.run(0, np.full(n_feeders, 2000.0), np.full(n_feeders, 500.0))
    with pytest.raises(PowerFlowError, match="did not converge at step 1"):
        model.run(1, np.full(n_feeders, 2e8), np.full(n_feeders, 5e7), " at step 1")
