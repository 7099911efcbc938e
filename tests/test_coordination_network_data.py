"""Data extraction for the optimisation layer: pandapower -> DC-OPF data, OpenDSS -> LinDist3Flow data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandapower as pp
import pytest

from coordination.network_data import _delta_split, feeder_data, transmission_data
from grid.feeder import FeederModel


def three_bus_net(rating_13_mw: float = 80.0):
    """Three 100 kV buses in a triangle, x = 0.1 pu each on 100 MVA (10 ohm)."""
    net = pp.create_empty_network(sn_mva=100)
    for _ in range(3):
        pp.create_bus(net, vn_kv=100.0)
    for f, t in [(0, 1), (0, 2), (1, 2)]:
        pp.create_line_from_parameters(net, f, t, length_km=1, r_ohm_per_km=0.0, x_ohm_per_km=10.0,
                                       c_nf_per_km=0, max_i_ka=10)
    net.line.loc[1, "max_i_ka"] = rating_13_mw / (100.0 * math.sqrt(3))
    pp.create_ext_grid(net, 0, min_p_mw=0, max_p_mw=200)
    pp.create_gen(net, 1, p_mw=0, min_p_mw=0, max_p_mw=200)
    pp.create_load(net, 2, p_mw=150)
    pp.create_poly_cost(net, 0, "ext_grid", cp1_eur_per_mw=10)
    pp.create_poly_cost(net, 0, "gen", cp1_eur_per_mw=30)
    return net


def test_transmission_data_by_hand():
    d = transmission_data(three_bus_net())
    assert d.base_mva == 100.0 and d.buses == [0, 1, 2] and d.slack_bus == 0
    assert [b.x_pu for b in d.branches] == pytest.approx([0.1, 0.1, 0.1])
    assert d.branches[1].rating_mw == pytest.approx(80.0)
    gens = {g.name: g for g in d.generators}
    assert gens["ext_grid:0"].c1 == 10 and gens["gen:0"].c1 == 30
    assert (gens["gen:0"].p_min_mw, gens["gen:0"].p_max_mw) == (0.0, 200.0)
    assert d.bus_load_mw() == {0: 0.0, 1: 0.0, 2: 150.0}


def test_case118_dc_flows_match_pandapower():
    """B-theta with the extracted reactances, taps and shifts reproduces pandapower's DC power flow."""
    import pandapower.networks as pn

    net = pn.case118()
    d = transmission_data(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.rundcpp(net, numba=False)
    index = {b: i for i, b in enumerate(d.buses)}
    injection = np.zeros(len(d.buses))
    for table, res in ((net.gen, net.res_gen), (net.ext_grid, net.res_ext_grid), (net.load, net.res_load)):
        sign = -1.0 if table is net.load else 1.0
        for i in table.index[table.in_service.astype(bool)]:
            injection[index[int(table.at[i, "bus"])]] += sign * float(res.at[i, "p_mw"])
    B = np.zeros((len(d.buses), len(d.buses)))
    shift_inj = np.zeros(len(d.buses))
    for br in d.branches:
        f, t, b = index[br.from_bus], index[br.to_bus], 1.0 / br.x_pu
        B[f, f] += b
        B[t, t] += b
        B[f, t] -= b
        B[t, f] -= b
        shift_inj[f] -= b * br.shift_rad
        shift_inj[t] += b * br.shift_rad
    keep = [i for i in range(len(d.buses)) if i != index[d.slack_bus]]
    theta = np.zeros(len(d.buses))
    theta[keep] = np.linalg.solve(B[np.ix_(keep, keep)], (injection / d.base_mva - shift_inj)[keep])
    flows = {br.name: d.base_mva * (theta[index[br.from_bus]] - theta[index[br.to_bus]] - br.shift_rad) / br.x_pu
             for br in d.branches}
    expected = {f"line:{i}": v for i, v in net.res_line.p_from_mw.items()}
    expected.update({f"trafo:{i}": v for i, v in net.res_trafo.p_hv_mw.items()})
    assert max(abs(flows[k] - expected[k]) for k in flows) < 1e-6
    assert len(d.generators) == len(net.gen) + len(net.ext_grid)
    assert any(g.c2 > 0 for g in d.generators)  # case118 has quadratic poly_cost


@pytest.fixture(scope="module")
def ieee13():
    model = FeederModel("ieee13", "ieee13")
    model.solve()  # regulators settle their taps
    return model, feeder_data(model)


def test_ieee13_tree_and_impedances(ieee13):
    model, d = ieee13
    dss = model.dss
    assert d.source_bus == "sourcebus" and len(d.buses) == 16 and len(d.branches) == 15
    assert all(br.from_bus in d.buses and br.to_bus in d.buses for br in d.branches)
    # Series impedance of each line equals the inverse of its Yprim series block (units handled).
    for br in d.branches:
        if br.kind != "line":
            continue
        (element,) = br.elements
        dss.Circuit.SetActiveElement(element)
        n = dss.CktElement.NumConductors()
        y = np.asarray(dss.CktElement.YPrim())
        y = (y[0::2] + 1j * y[1::2]).reshape(2 * n, 2 * n)
        z = np.linalg.inv(-y[:n, n:])
        assert np.allclose(br.z_ohm, z, rtol=1e-6, atol=1e-9), element
    reg = next(br for br in d.branches if br.kind == "regulator")
    assert reg.elements == ["Transformer.vr1a", "Transformer.vr1b", "Transformer.vr1c"]
    taps = []
    for name in ("vr1a", "vr1b", "vr1c"):
        dss.Transformers.Name(name)
        dss.Transformers.Wdg(2)
        taps.append(dss.Transformers.Tap())
    assert reg.ratio == pytest.approx(taps)
    # 650-632 is 2000 ft of config 601: 0.3465 ohm/mile on phase a.
    line = next(br for br in d.branches if br.elements == ["Line.650_632"])
    assert line.z_ohm[0, 0].real == pytest.approx(0.3465 * 2000 / 5280)


def test_ieee13_loads_per_phase(ieee13):
    _, d = ieee13
    loads = {ld.name: ld for ld in d.loads}
    assert sum(ld.p_kw.sum() for ld in d.loads) == pytest.approx(3466.0)
    # Balanced three-phase delta load: a third per phase.
    assert loads["s671"].p_kw == pytest.approx([385.0] * 3)
    # Single-phase delta B-C: S_b = S e^{-j30}/sqrt3, S_c = S e^{+j30}/sqrt3 (balanced voltages).
    s = complex(230, 132)
    sb, sc = s * np.exp(-1j * np.pi / 6) / math.sqrt(3), s * np.exp(1j * np.pi / 6) / math.sqrt(3)
    assert loads["s646bc"].phases == (2, 3)
    assert loads["s646bc"].p_kw == pytest.approx([sb.real, sc.real])
    assert loads["s646bc"].q_kvar == pytest.approx([sb.imag, sc.imag])
    assert (loads["s646bc"].vdep_p, loads["s611c"].vdep_p, loads["s671"].vdep_p) == (1.0, 0.5, 0.0)
    assert _delta_split(1, 2)[0] + _delta_split(1, 2)[1] == pytest.approx(1.0)
    caps = {c.name: c for c in d.capacitors}
    assert caps["cap675"].kvar == pytest.approx([200.0] * 3)
