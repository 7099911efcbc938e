"""Bring-your-own feeders (issue #14, items 10-13): run scripts with `Show` commands, solver
settings, delta feeders and matching a bus's P and Q. Feeder-level checks, no federation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grid.errors import FeederModelError
from grid.feeder import FeederModel
from tests.conftest import REFERENCE, ROOT


def test_official_run_script_with_show_commands_compiles(tmp_path: Path, monkeypatch) -> None:
    """The official Run_IEEE123Bus.DSS ends in `Show` reports, which OpenDSS opens in an editor;
    without one (no xdg-open on PATH, as on a cluster) it failed with a bare "(#704) Error 704"."""
    if not (REFERENCE / "123Bus" / "Run_IEEE123Bus.DSS").is_file():
        pytest.skip(f"official OpenDSS models not found at {REFERENCE}")
    copy = tmp_path / "opendss"
    shutil.copytree(REFERENCE, copy)  # its reports are written beside the model: not into the reference
    monkeypatch.setenv("PATH", str(tmp_path))  # no editor to start
    model = FeederModel("ieee123_run", str(copy / "123Bus" / "Run_IEEE123Bus.DSS"))
    model.solve()
    assert model.dss.Solution.Converged() and len(model.node_names) > 250


def test_compile_error_names_the_file_and_line(tmp_path: Path) -> None:
    """OpenDSS lists where an error arose on lines of their own: the one-line error keeps them."""
    feeder = tmp_path / "f"
    shutil.copytree(ROOT / "feeder_models" / "ieee13", feeder)
    (feeder / "loads.dss").write_text((feeder / "loads.dss").read_text() + "\nNew Load.bad Bus1=671 kW=oops\n")
    with pytest.raises(FeederModelError) as caught:
        FeederModel("f", str(feeder / "master.dss"))
    message = str(caught.value)
    assert "\n" not in message and f"(at {feeder / 'loads.dss'}, line " in message, message


def _feeder_spec(**solver):
    from scenario.schema import FeederSpec

    return FeederSpec(model="ieee123", bus=6, solver=solver)


def test_solver_settings_are_validated() -> None:
    from pydantic import ValidationError

    spec = _feeder_spec(max_iterations=30, max_control_iterations=200, algorithm="newton")
    assert (spec.solver.max_iterations, spec.solver.algorithm) == (30, "newton")
    for bad in ({"algorithm": "fast"}, {"max_iterations": 0}, {"tolerance": 1e-4}):
        with pytest.raises(ValidationError):
            _feeder_spec(**bad)


def test_solver_settings_reach_opendss_and_non_convergence_suggests_them() -> None:
    """IEEE 8500 stops at step 0 with OpenDSS's default 15 iterations: the message says which
    setting to raise, and the setting reaches OpenDSS."""
    from grid.errors import PowerFlowError

    model = FeederModel("f123", "ieee123")
    model.set_solver(_feeder_spec(max_iterations=1).solver)
    with pytest.raises(PowerFlowError, match=r"did not converge at step 0; raise this feeder's solver.max_iterations \(now 1\)"):
        model.solve(" at step 0")
    model.set_solver(_feeder_spec(max_iterations=40, max_control_iterations=7, algorithm="newton").solver)
    solution = model.dss.Solution
    assert (solution.MaxIterations(), solution.MaxControlIterations(), solution.Algorithm()) == (40, 7, 1)
    model.solve()
    assert solution.Converged()
