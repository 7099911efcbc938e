"""The co-simulation against references: real broker, real federate processes,
real pandapower and OpenDSS, compared with the same study solved in one process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grid.networks import load_network
from grid.sequential import run_sequential
from results.store import RunFile
from scenario.schema import load_scenario
from tandem.study import resolve_scenario
from tests.conftest import SMALL, run_processes, tandem

DURATION = "2h"  # 24 steps of 5 min


def _complex(vm: np.ndarray, va: np.ndarray) -> np.ndarray:
    return vm * np.exp(1j * np.deg2rad(va))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The small study run twice by the real `tandem run`: loose (two feeder processes) and iterative."""
    out = tmp_path_factory.mktemp("cosim")
    results = {}
    for mode, extra in (("loose", ["--feeder-processes", "2"]), ("iterative", [])):
        path = out / f"{mode}.h5"
        proc = tandem("run", str(SMALL), "--duration", DURATION, "--coupling", mode, "-o", str(path), *extra)
        assert proc.returncode == 0, proc.stderr
        assert not run_processes(out / f"{mode}_run"), "processes left behind"
        results[mode] = path
    return results


@pytest.fixture(scope="module")
def scenario():
    resolved, _ = resolve_scenario(load_scenario(SMALL, {"time.duration": DURATION}))
    return resolved


def _read(path, *names):
    with RunFile(path) as run:
        return [run.read(n) for n in names]


def test_loose_cosimulation_equals_the_plain_loop(runs, scenario):
    """Same exchange order as the sequential loop, so the numbers must agree to round-off."""
    seq = run_sequential(scenario.model_copy(update={"coupling": scenario.coupling.model_copy(update={"mode": "loose"})}))
    vm, va, p, q, mult, vmin, vmax = _read(runs["loose"], "boundary/vm_pu", "boundary/va_deg", "feeders/p_kw", "feeders/q_kvar",
                                           "feeders/multiplier", "feeders/vmin_pu", "feeders/vmax_pu")
    np.testing.assert_allclose(vmin, seq.feeder_vmin_pu, rtol=1e-9)
    np.testing.assert_allclose(vmax, seq.feeder_vmax_pu, rtol=1e-9)
    np.testing.assert_allclose(vm, seq.boundary_vm_pu, rtol=0, atol=1e-9)
    np.testing.assert_allclose(va, seq.boundary_va_deg, rtol=0, atol=1e-7)
    np.testing.assert_allclose(p, seq.feeder_p_kw, rtol=1e-9)
    np.testing.assert_allclose(q, seq.feeder_q_kvar, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mult, seq.multipliers, rtol=1e-12)


def test_iterative_coupling_agrees_with_monolithic_reference(runs, scenario):
    reference = run_sequential(scenario, mode="fixed_point", tolerance_pu=1e-8, max_iterations=200)
    assert reference.mismatch_pu.max() <= 1e-8
    vm, va, iterations, mismatch, converged = _read(
        runs["iterative"], "boundary/vm_pu", "boundary/va_deg", "coupling/iterations", "coupling/mismatch_pu", "coupling/converged"
    )
    error = np.abs(_complex(vm, va) - _complex(reference.boundary_vm_pu, reference.boundary_va_deg))
    assert error.max() <= 1e-4, f"worst boundary error {error.max():.2e} pu"
    assert converged.all() and mismatch.max() <= scenario.coupling.tolerance_pu
    assert iterations.min() >= 2, "iterative coupling must exchange more than once per step"


@pytest.mark.parametrize("mode", ["loose", "iterative"])
def test_power_balance_at_every_boundary_bus(runs, scenario, mode):
    """Transmission-side load at a boundary bus = sum over its feeders of multiplier x substation power."""
    bus, p_mw, q_mvar, fbus, mult, p, q, p_tot, q_tot = _read(
        runs[mode], "boundary/bus", "boundary/p_mw", "boundary/q_mvar", "feeders/bus", "feeders/multiplier",
        "feeders/p_kw", "feeders/q_kvar", "feeders/p_total_kw", "feeders/q_total_kvar",
    )
    np.testing.assert_allclose(p.sum(axis=2), p_tot, rtol=1e-12)
    np.testing.assert_allclose(q.sum(axis=2), q_tot, rtol=1e-12, atol=1e-9)
    assert p_mw.shape == (24, len(bus))
    for j, b in enumerate(bus):
        at_bus = fbus == b
        expected_p = (mult[at_bus] * p_tot[:, at_bus]).sum(axis=1) / 1000
        expected_q = (mult[at_bus] * q_tot[:, at_bus]).sum(axis=1) / 1000
        np.testing.assert_allclose(p_mw[:, j], expected_p, rtol=1e-9)
        np.testing.assert_allclose(q_mvar[:, j], expected_q, rtol=1e-9, atol=1e-9)


def test_match_bus_load_copies_carry_the_bus_load_at_the_start(runs, scenario):
    """In loose coupling the first feeder solve is recorded, so the match can be checked exactly."""
    net = load_network(scenario.transmission.network)
    from timeseries.profiles import load_shape

    level0 = load_shape(scenario.transmission.load_profile, scenario.time.index())[0]
    mult, p_tot = _read(runs["loose"], "feeders/multiplier", "feeders/p_total_kw")
    for i, feeder in enumerate(scenario.feeders):
        if feeder.multiplier == "match_bus_load":
            own = net.load.p_mw[net.load.bus == feeder.bus].sum()
            assert mult[i] * p_tot[0, i] / 1000 == pytest.approx(own * level0, rel=1e-9)
        else:
            assert mult[i] == feeder.multiplier


def test_loose_coupling_error_is_the_recorded_one_step_lag(runs):
    """Loose coupling lags one step: what it records as mismatch is that lag, and its distance
    from the converged (iterative) solution never exceeds it."""
    vm_l, va_l, mismatch_l = _read(runs["loose"], "boundary/vm_pu", "boundary/va_deg", "coupling/mismatch_pu")
    vm_i, va_i = _read(runs["iterative"], "boundary/vm_pu", "boundary/va_deg")
    v_l, v_i = _complex(vm_l, va_l), _complex(vm_i, va_i)
    lag = np.abs(np.diff(v_l, axis=0)).max(axis=1)
    np.testing.assert_allclose(mismatch_l[1:], lag, rtol=1e-9, atol=1e-12)
    deviation = np.abs(v_l - v_i).max(axis=1)
    assert deviation.max() > 1e-6, "the lag should be visible in this study"
    assert np.all(deviation <= mismatch_l + 2e-6), "loose result strayed further than its recorded lag"


def test_results_file_describes_itself(runs):
    with RunFile(runs["iterative"]) as run:
        assert run.complete and run.error == ""
        assert run.n_steps == 24 and run.attr("n_steps_planned") == 24
        assert run.scenario["coupling"]["mode"] == "iterative"
        assert "ieee13_at_6" in run.attr("scenario_source")
        assert {"helics", "pandapower", "OpenDSSDirect.py", "h5py"} <= set(run.versions)
        assert run.attr("started_at") and run.attr("finished_at")
        missing_units = []
        run.file.visititems(lambda name, obj: missing_units.append(name) if hasattr(obj, "shape") and "units" not in obj.attrs else None)
        assert not missing_units
        seconds = run.read("time/seconds")
        np.testing.assert_allclose(seconds, np.arange(24) * 300.0)
        assert run.file["feeders/p_kw"].compression == "gzip"
        assert run.file["feeders/p_kw"].attrs["dims"] == "time,feeder,phase"
        nodes = run.read("feeders/nodes/ieee123_at_20")
        vmin_node = run.read("feeders/vmin_node")
        assert set(vmin_node[:, 1]) <= set(range(len(nodes)))
        vmin, vmax = run.read("feeders/vmin_pu"), run.read("feeders/vmax_pu")
        assert np.all((0.85 < vmin) & (vmin <= vmax) & (vmax < 1.15))
        json.loads(run.attr("versions"))
