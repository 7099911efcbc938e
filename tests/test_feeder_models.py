"""Cross-checks of the bundled IEEE feeder models against the official OpenDSS models.

The official OpenDSS models of the IEEE test feeders (licensed reference data,
kept outside the project in ``../shared/reference/opendss``) are only used
here, to check that our own models of the published feeder data give the same
snapshot power-flow solution: same bus.phase nodes, every node voltage
magnitude within 0.1 % and the substation P and Q within 0.5 %.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import opendssdirect as dss
import pytest

from feeder_models import BUNDLED_FEEDERS, bundled_feeder_master

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "opendss"
REFERENCE_MASTERS: dict[str, Path] = {
    "ieee13": REFERENCE_DIR / "13Bus" / "IEEE13Nodeckt.dss",
    "ieee123": REFERENCE_DIR / "123Bus" / "IEEE123Master.dss",
}

# Nodes that exist only in the official model. The official 123-node model
# represents the two normally-open switches 151-300 and 54-94 as short lines
# from 151 / 54 to dangling buses "300_open" / "94_open" so that the open-point
# voltages can be displayed. We model the same switches between the real IEEE
# buses with the far terminal opened, so these artificial buses don't exist in
# our model; every IEEE bus (and every other node) must still match.
REFERENCE_ONLY_NODES: dict[str, frozenset[str]] = {
    "ieee13": frozenset(),
    "ieee123": frozenset({"300_open.1", "300_open.2", "300_open.3", "94_open.1"}),
}

VOLTAGE_REL_TOL = 1e-3  # 0.1 % on every node |V| in pu
POWER_REL_TOL = 5e-3  # 0.5 % on total substation P and Q

# Commands a bundled master (or the files it redirects to) must not contain.
FORBIDDEN_COMMANDS = {"solve", "clear", "buscoords", "plot", "export", "show", "compile"}

requires_reference = pytest.mark.skipif(
    not REFERENCE_DIR.is_dir(),
    reason=f"official OpenDSS reference models not found at {REFERENCE_DIR}",
)


@dataclass(frozen=True)
class Snapshot:
    """Solved snapshot of one circuit: node |V| (pu) and substation power."""

    voltages_pu: dict[str, float]
    p_kw: float
    q_kvar: float


def _compile(master: Path) -> None:
    """Clear OpenDSS and compile ``master``, restoring the process working directory."""
    cwd = os.getcwd()
    try:
        dss.Text.Command("clear")
        dss.Text.Command(f'compile "{master}"')
    finally:
        os.chdir(cwd)  # compile changes OpenDSS' (and the process') current directory


def _solve_snapshot(master: Path) -> Snapshot:
    """Compile ``master``, solve it in snapshot mode and read the results out."""
    _compile(master)
    dss.Text.Command("set mode=snapshot")
    dss.Solution.Solve()
    assert dss.Solution.Converged(), f"{master} did not converge"
    names = [name.lower() for name in dss.Circuit.AllNodeNames()]
    magnitudes = dss.Circuit.AllBusMagPu()
    assert len(names) == len(magnitudes)
    dss.Circuit.SetActiveElement("Vsource.source")
    assert dss.CktElement.Name().lower() == "vsource.source"
    n_conductors = dss.CktElement.NumConductors()
    powers = dss.CktElement.Powers()[: 2 * n_conductors]  # terminal 1 only
    return Snapshot(
        voltages_pu=dict(zip(names, magnitudes)),
        p_kw=sum(powers[0::2]),
        q_kvar=sum(powers[1::2]),
    )


_snapshots: dict[tuple[str, str], Snapshot] = {}


def _snapshot(feeder: str, which: str) -> Snapshot:
    """Cached snapshot of our model (``which="ours"``) or the official one."""
    key = (feeder, which)
    if key not in _snapshots:
        master = bundled_feeder_master(feeder) if which == "ours" else REFERENCE_MASTERS[feeder]
        _snapshots[key] = _solve_snapshot(master)
    return _snapshots[key]


def _rel_err(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


# --------------------------------------------------------------------------- #
# Package API and model hygiene (no reference data needed)
# --------------------------------------------------------------------------- #


def test_bundled_feeders_listed() -> None:
    assert set(BUNDLED_FEEDERS) == {"ieee13", "ieee123"}
    for name in BUNDLED_FEEDERS:
        master = bundled_feeder_master(name)
        assert master.is_absolute()
        assert master.is_file(), master


def test_unknown_feeder_rejected() -> None:
    with pytest.raises(ValueError, match="ieee34") as excinfo:
        bundled_feeder_master("ieee34")
    message = str(excinfo.value)
    for name in BUNDLED_FEEDERS:
        assert name in message


@pytest.mark.parametrize("feeder", sorted(BUNDLED_FEEDERS))
def test_model_files_have_no_forbidden_commands(feeder: str) -> None:
    folder = bundled_feeder_master(feeder).parent
    files = sorted(folder.glob("*.dss"))
    assert files
    for path in files:
        for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
            line = re.split(r"!|//", raw, maxsplit=1)[0].strip()
            if not line:
                continue
            command = line.split()[0].lower()
            where = f"{path.name}:{lineno}: {raw.strip()}"
            assert command not in FORBIDDEN_COMMANDS, where
            if command == "redirect":
                target = line.split(maxsplit=1)[1].strip("()\"' ")
                assert not Path(target).is_absolute(), where
                assert (folder / target).is_file(), where


@pytest.mark.parametrize("feeder", sorted(BUNDLED_FEEDERS))
def test_master_compiles_from_any_directory(feeder: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _compile(bundled_feeder_master(feeder))
    assert dss.Circuit.Name().lower() == feeder
    # The co-simulation drives the default 3-phase source of the circuit.
    assert [name.lower() for name in dss.Vsources.AllNames()] == ["source"]
    dss.Vsources.Name("source")
    assert dss.Vsources.Phases() == 3
    # Voltage bases are set by the master (CalcVoltageBases), without a solve.
    first_feeder_bus = {"ieee13": "650", "ieee123": "150"}[feeder]
    dss.Circuit.SetActiveBus(first_feeder_bus)
    assert dss.Bus.kVBase() == pytest.approx(4.16 / math.sqrt(3), rel=1e-6)
    dss.Solution.Solve()
    assert dss.Solution.Converged()


# --------------------------------------------------------------------------- #
# Agreement with the official OpenDSS models
# --------------------------------------------------------------------------- #


@requires_reference
@pytest.mark.parametrize("feeder", sorted(BUNDLED_FEEDERS))
def test_node_sets_match_reference(feeder: str) -> None:
    ours = set(_snapshot(feeder, "ours").voltages_pu)
    ref = set(_snapshot(feeder, "reference").voltages_pu)
    assert not ours - ref, f"nodes only in our model: {sorted(ours - ref)}"
    assert ref - ours == REFERENCE_ONLY_NODES[feeder], (
        f"nodes only in the reference model: {sorted(ref - ours)}"
    )


@requires_reference
@pytest.mark.parametrize("feeder", sorted(BUNDLED_FEEDERS))
def test_node_voltages_match_reference(feeder: str) -> None:
    ours = _snapshot(feeder, "ours").voltages_pu
    ref = _snapshot(feeder, "reference").voltages_pu
    common = sorted(set(ours) & set(ref))
    assert len(common) >= len(ref) - len(REFERENCE_ONLY_NODES[feeder])
    errors = {node: _rel_err(ours[node], ref[node]) for node in common}
    worst = max(errors, key=errors.__getitem__)
    assert errors[worst] <= VOLTAGE_REL_TOL, (
        f"{feeder}: worst node {worst}: ours {ours[worst]:.6f} pu, "
        f"reference {ref[worst]:.6f} pu (rel. error {errors[worst]:.3%}, "
        f"{sum(e > VOLTAGE_REL_TOL for e in errors.values())} nodes out of tolerance)"
    )


@requires_reference
@pytest.mark.parametrize("feeder", sorted(BUNDLED_FEEDERS))
def test_substation_power_matches_reference(feeder: str) -> None:
    ours = _snapshot(feeder, "ours")
    ref = _snapshot(feeder, "reference")
    p_err = _rel_err(ours.p_kw, ref.p_kw)
    q_err = _rel_err(ours.q_kvar, ref.q_kvar)
    message = (
        f"{feeder}: substation P ours {ours.p_kw:.2f} kW vs reference {ref.p_kw:.2f} kW "
        f"({p_err:.3%}); Q ours {ours.q_kvar:.2f} kvar vs reference {ref.q_kvar:.2f} kvar "
        f"({q_err:.3%})"
    )
    assert p_err <= POWER_REL_TOL, message
    assert q_err <= POWER_REL_TOL, message
