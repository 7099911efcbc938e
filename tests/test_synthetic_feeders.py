"""Synthetic feeders (feeder_models.synthetic): size, radial structure, voltages,
load, unbalance, reproducibility, and driving them the way the co-simulation does."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import opendssdirect
import pytest

from feeder_models.synthetic import write_synthetic_feeder

SIZES = [50, 300, 2000]
SINGLE_PHASE_SHARE = (0.40, 0.60)  # the range the generator promises


@dataclass
class Solved:
    n_buses: int
    master: Path
    dss: object  # an opendssdirect context, solved at peak in snapshot mode
    peak_kw: float
    solve_s: float


def compile_feeder(master: Path):
    """A fresh OpenDSS context with ``master`` compiled (OpenDSS changes the process directory)."""
    dss = opendssdirect.NewContext()
    cwd = os.getcwd()
    try:
        dss.Text.Command(f'compile "{master}"')
    finally:
        os.chdir(cwd)
    return dss


@pytest.fixture(scope="module")
def feeders(tmp_path_factory) -> dict[int, Solved]:
    solved = {}
    for n in SIZES:
        master = write_synthetic_feeder(tmp_path_factory.mktemp(f"synthetic{n}"), n, seed=0)
        dss = compile_feeder(master)
        dss.Text.Command("set mode=snapshot")
        start = time.perf_counter()
        dss.Solution.Solve()
        peak_kw = sum(_loads_kw(dss))
        solved[n] = Solved(n, master, dss, peak_kw, time.perf_counter() - start)
    return solved


def _loads_kw(dss) -> list[float]:
    kw = []
    i = dss.Loads.First()
    while i > 0:
        kw.append(dss.Loads.kW())
        i = dss.Loads.Next()
    return kw


def _feeder_voltages(dss) -> np.ndarray:
    names = dss.Circuit.AllNodeNames()
    v = np.asarray(dss.Circuit.AllBusMagPu())
    return v[[not n.lower().startswith("sourcebus.") for n in names]]


def _bus_voltages(dss, bus: str) -> np.ndarray:
    dss.Circuit.SetActiveBus(bus)
    return np.asarray(dss.Bus.puVmagAngle()[0::2])


def _source_phase_p(dss) -> np.ndarray:
    dss.Circuit.SetActiveElement("Vsource.source")
    return -np.asarray(dss.CktElement.Powers()[:6])[0::2]


def _pd_edges(dss) -> list[tuple[str, str, str]]:
    """(element, bus, bus) for every two-terminal power-delivery element between two buses."""
    edges = []
    for name in dss.Circuit.AllElementNames():
        kind = name.split(".")[0].lower()
        if kind not in ("line", "transformer"):
            continue
        dss.Circuit.SetActiveElement(name)
        buses = {b.split(".")[0].lower() for b in dss.CktElement.BusNames()}
        assert len(buses) == 2, name
        edges.append((name, *sorted(buses)))
    return edges


@pytest.mark.parametrize("n", SIZES)
def test_converges_with_requested_bus_count(feeders, n):
    dss = feeders[n].dss
    assert dss.Solution.Converged()
    buses = [b.lower() for b in dss.Circuit.AllBusNames()]
    feeder_buses = [b for b in buses if b != "sourcebus"]
    assert abs(len(feeder_buses) - n) <= 0.05 * n
    assert "b0001" in buses and all(b == "subst_lv" or (b[0] == "b" and b[1:].isdigit()) for b in feeder_buses)


@pytest.mark.parametrize("n", SIZES)
def test_radial(feeders, n):
    dss = feeders[n].dss
    edges = _pd_edges(dss)
    graph = nx.Graph()
    graph.add_nodes_from(b.lower() for b in dss.Circuit.AllBusNames())
    graph.add_edges_from((a, b) for _, a, b in edges)  # the 3 regulator units are one edge
    assert nx.is_tree(graph)
    # Distribution part (from the regulated head b0001 on): lines only, one fewer than its buses.
    dist_buses = dss.Circuit.NumBuses() - 2  # without sourcebus and subst_lv
    assert dss.Lines.Count() == dist_buses - 1
    lines = nx.Graph((a, b) for name, a, b in edges if name.lower().startswith("line."))
    assert nx.is_tree(lines) and lines.number_of_nodes() == dist_buses


@pytest.mark.parametrize("n", SIZES)
def test_voltages_at_peak(feeders, n):
    v = _feeder_voltages(feeders[n].dss)
    assert v.min() >= 0.90 and v.max() <= 1.10
    assert 0.92 <= v.min() <= 1.0


@pytest.mark.parametrize("n", SIZES)
def test_total_load_is_the_requested_peak(feeders, n):
    solved = feeders[n]
    requested = min(5.0 * n, 10_000.0)  # the documented default
    assert solved.peak_kw == pytest.approx(requested, rel=1e-3)
    p = _source_phase_p(solved.dss).sum()
    assert requested <= p <= 1.10 * requested  # loads plus losses


@pytest.mark.parametrize("n", SIZES)
def test_unbalanced_but_not_absurdly(feeders, n):
    dss = feeders[n].dss
    p = _source_phase_p(dss)
    assert (p > 0).all()
    assert 1.02 < p.max() / p.min() < 2.0
    # Current unbalance (max deviation from the mean) at the head of the feeder's trunk.
    dss.Circuit.SetActiveElement("Line.l0002")
    assert dss.CktElement.NumPhases() == 3
    amps = np.asarray(dss.CktElement.CurrentsMagAng()[0:6:2])
    unbalance = np.abs(amps - amps.mean()).max() / amps.mean()
    assert 0.02 <= unbalance <= 0.15


@pytest.mark.parametrize("n", SIZES)
def test_phase_mix(feeders, n):
    dss = feeders[n].dss
    counts = {1: 0, 2: 0, 3: 0}
    for bus in dss.Circuit.AllBusNames():
        if bus.lower() != "sourcebus":
            dss.Circuit.SetActiveBus(bus)
            counts[dss.Bus.NumNodes()] += 1
    total = sum(counts.values())
    assert SINGLE_PHASE_SHARE[0] <= counts[1] / total <= SINGLE_PHASE_SHARE[1]
    assert counts[2] > 0 and counts[3] > 0


@pytest.mark.parametrize("n", SIZES)
def test_conductors_carry_the_peak_and_shrink_downstream(feeders, n):
    dss = feeders[n].dss
    feeding: dict[str, tuple[float, str]] = {}  # bus -> (normamps, upstream bus) of the line feeding it
    i = dss.Lines.First()
    while i > 0:
        norm = dss.Lines.NormAmps()
        assert dss.Lines.LineCode() and 0 < norm < dss.Lines.EmergAmps()
        phases = dss.CktElement.NumPhases()
        amps = max(dss.CktElement.CurrentsMagAng()[0 : 2 * phases : 2])
        assert amps <= norm, f"{dss.Lines.Name()} carries {amps:.0f} A > {norm} A"
        feeding[dss.Lines.Bus2().split(".")[0].lower()] = (norm, dss.Lines.Bus1().split(".")[0].lower())
        i = dss.Lines.Next()
    for norm, upstream in feeding.values():
        if upstream in feeding:
            assert norm <= feeding[upstream][0]


def test_reproducible(tmp_path):
    a = write_synthetic_feeder(tmp_path / "a", 300, seed=7)
    b = write_synthetic_feeder(tmp_path / "b", 300, seed=7)
    c = write_synthetic_feeder(tmp_path / "c", 300, seed=8)
    files = sorted(p.name for p in a.parent.iterdir())
    assert "master.dss" in files and files == sorted(p.name for p in b.parent.iterdir())
    for name in files:
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name
    assert (a.parent / "lines.dss").read_bytes() != (c.parent / "lines.dss").read_bytes()
    assert (a.parent / "loads.dss").read_bytes() != (c.parent / "loads.dss").read_bytes()


def test_model_files_follow_the_bundled_conventions(feeders):
    folder = feeders[300].master.parent
    for path in folder.glob("*.dss"):
        for line in path.read_text().splitlines():
            words = line.strip().lower().split()
            if not words or words[0].startswith("!"):
                continue
            assert words[0] not in {"solve", "clear", "compile", "plot", "show", "export"}, line
            if words[0] == "redirect":
                assert not os.path.isabs(words[1]) and (folder / words[1]).is_file()


@pytest.mark.parametrize("n", SIZES)
def test_driven_like_the_cosimulation(feeders, n):
    dss = feeders[n].dss
    before_sub = _bus_voltages(dss, "subst_lv")
    before_head = _bus_voltages(dss, "b0001")
    p_peak = _source_phase_p(dss).sum()
    try:
        dss.Vsources.Name("source")
        dss.Vsources.PU(0.97)
        dss.Solution.Solve()
        assert dss.Solution.Converged()
        # The substation bus follows the source; the regulators then bring the feeder head back.
        assert np.allclose(_bus_voltages(dss, "subst_lv") / before_sub, 0.97, atol=0.005)
        assert np.abs(_bus_voltages(dss, "b0001") - before_head).max() < 0.02
        v = _feeder_voltages(dss)
        assert v.min() >= 0.90 and v.max() <= 1.10
        dss.Solution.LoadMult(0.5)
        dss.Solution.Solve()
        assert dss.Solution.Converged()
        assert _source_phase_p(dss).sum() == pytest.approx(0.5 * p_peak, rel=0.05)
        # With the regulators held, the head follows the source too.
        dss.Solution.LoadMult(1.0)
        dss.Text.Command("set controlmode=off")
        dss.Vsources.PU(1.0)
        dss.Solution.Solve()
        reference = _bus_voltages(dss, "b0001")
        dss.Vsources.PU(0.97)
        dss.Solution.Solve()
        assert np.allclose(_bus_voltages(dss, "b0001") / reference, 0.97, atol=0.005)
    finally:
        dss.Text.Command("set controlmode=static")
        dss.Vsources.PU(1.0)
        dss.Solution.LoadMult(1.0)
        dss.Solution.Solve()


def _run_at_peak(model) -> None:
    """One feeder step at 1.0 pu and peak load, whichever form FeederModel.run has."""
    if hasattr(model, "load_levels"):  # per-load profiles: run(voltage, step)
        model.load_levels = np.ones((len(model.loads), 1))
        model.run(1.0 + 0j, 0)
    else:  # one load level for the feeder: run(voltage, level)
        model.run(1.0 + 0j, 1.0)


@pytest.mark.parametrize("n", SIZES)
def test_runs_as_a_tandem_feeder_model(feeders, n):
    from grid.feeder import FeederModel

    model = FeederModel(f"synthetic{n}", str(feeders[n].master))
    _run_at_peak(model)
    p, q = model.substation_power()
    assert (p > 0).all() and (q > -0.5 * p).all()
    assert p.sum() == pytest.approx(_source_phase_p(feeders[n].dss).sum(), rel=1e-3)
    extremes = getattr(model, "voltage_extremes", None) or model.voltage_stats
    lo, lo_i, hi, hi_i = extremes()[:4]
    assert 0.92 <= lo <= 1.0 and lo <= hi <= 1.06
    assert 0 <= lo_i < len(model.node_names) and 0 <= hi_i < len(model.node_names)
    assert not model.node_names[lo_i].lower().startswith("sourcebus")


def test_arguments(tmp_path):
    master = write_synthetic_feeder(str(tmp_path / "f"), 120, seed=3, kv_ll=24.9, peak_load_kw=900.0, name="feederx")
    assert master.is_absolute() and master.name == "master.dss"
    dss = compile_feeder(master)
    assert dss.Circuit.Name() == "feederx"
    dss.Solution.Solve()
    assert dss.Solution.Converged()
    assert sum(_loads_kw(dss)) == pytest.approx(900.0, rel=1e-3)
    dss.Circuit.SetActiveBus("b0001")
    assert dss.Bus.kVBase() == pytest.approx(24.9 / math.sqrt(3), rel=1e-3)
    v = _feeder_voltages(dss)
    assert 0.92 <= v.min() <= 1.0 and v.max() <= 1.06
    with pytest.raises(ValueError):
        write_synthetic_feeder(tmp_path / "g", 5)
