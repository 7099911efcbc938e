"""Power-flow results read straight from the solved bus voltages of a recycled pandapower run.

After the first solve, a recycled `runpp` spends about two thirds of its time writing
pandapower's result tables (`net.res_*`, one pandas assignment per column), while the
transmission federate needs only bus voltages, line and transformer loading and the power of
the units with costs. With `only_v_results` pandapower stops after the Newton-Raphson and
leaves the complex bus voltages in `net._ppc`; `ResultReader` computes those quantities from
them with the formulas of pandapower's own extraction (branch flows from Yf and Yt, currents
from flows and voltages, the slack bus's power from its injection). `TransmissionModel` checks
them against pandapower's tables after the first, full solve and keeps pandapower's extraction
if they disagree, e.g. for an element type this module does not model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GEN_TABLES = ("ext_grid", "gen", "sgen")
AGREE_RTOL, AGREE_ATOL = 1e-9, 1e-9


@dataclass
class PowerFlowResults:
    """What the transmission federate reads after a solve, in the rows of the net's tables."""

    vm_pu: np.ndarray  # per net.bus row; NaN for buses out of service
    va_degree: np.ndarray
    line_loading: np.ndarray  # percent, per net.line row
    trafo_loading: np.ndarray  # percent, per net.trafo row
    p_mw: dict[str, np.ndarray]  # active power per row of ext_grid, gen and sgen

    @classmethod
    def from_tables(cls, net) -> "PowerFlowResults":
        """pandapower's own result tables."""
        return cls(
            net.res_bus.vm_pu.to_numpy(dtype=float, copy=True),
            net.res_bus.va_degree.to_numpy(dtype=float, copy=True),
            net.res_line.loading_percent.to_numpy(dtype=float, copy=True),
            net.res_trafo.loading_percent.to_numpy(dtype=float, copy=True),
            {t: net[f"res_{t}"].p_mw.to_numpy(dtype=float, copy=True) for t in GEN_TABLES},
        )

    def disagreement(self, other: "PowerFlowResults") -> str:
        """The first quantity that differs from `other` beyond 1e-9 (relative or absolute); '' if none."""
        pairs = [("vm_pu", self.vm_pu, other.vm_pu), ("va_degree", self.va_degree, other.va_degree),
                 ("line loading", self.line_loading, other.line_loading),
                 ("trafo loading", self.trafo_loading, other.trafo_loading)]
        pairs += [(f"{t} p_mw", self.p_mw[t], other.p_mw[t]) for t in GEN_TABLES]
        for name, a, b in pairs:
            if a.shape != b.shape or not np.allclose(a, b, rtol=AGREE_RTOL, atol=AGREE_ATOL, equal_nan=True):
                return name
        return ""


class ResultReader:
    """Computes `PowerFlowResults` from the voltages pandapower's Newton-Raphson left in
    net._ppc. Built after a full `runpp`, whose internal model later solves reuse (only loads'
    and generators' power may change, not the network's switching or parameters)."""

    def __init__(self, net):
        from pandapower.pypower.idx_brch import F_BUS, T_BUS
        from pandapower.pypower.idx_bus import BASE_KV

        ppc = net._ppc
        internal = ppc["internal"]
        self.base_mva = float(internal["baseMVA"])
        n_ppci_bus = internal["bus"].shape[0]
        # ppc buses are sorted in-service first, in ppci order (see pandapower's _ppci_bus_to_ppc)
        ppc_bus = np.asarray(net._pd2ppc_lookups["bus"])[net.bus.index.to_numpy()]
        self.bus_rows = np.where(net.bus.in_service.to_numpy(dtype=bool) & (ppc_bus < n_ppci_bus), ppc_bus, -1)
        self.base_kv = internal["bus"][:, BASE_KV].real

        branch_is = np.flatnonzero(internal["branch_is"])
        self.n_ppc_branch = ppc["branch"].shape[0]
        self.ppci_branch_to_ppc = branch_is
        self.f_bus = internal["branch"][:, F_BUS].real.astype(np.int64)
        self.t_bus = internal["branch"][:, T_BUS].real.astype(np.int64)
        lookup = net._pd2ppc_lookups["branch"]
        self.line_range = lookup.get("line", (0, 0))
        self.trafo_range = lookup.get("trafo", (0, 0))
        line, trafo = net.line, net.trafo
        self.line_rating = (line.max_i_ka * line.df * line.parallel).to_numpy(dtype=float)
        self.trafo_vn = np.column_stack([trafo.vn_hv_kv.to_numpy(dtype=float), trafo.vn_lv_kv.to_numpy(dtype=float)])
        self.trafo_sn = trafo.sn_mva.to_numpy(dtype=float)
        self.trafo_scale = (trafo.parallel * trafo.df).to_numpy(dtype=float)

        # Units: ppc gen rows, in-service ones in ppci order (see pandapower's _ppci_gen_to_ppc).
        self.ppci_gen_to_ppc = np.flatnonzero(internal["gen_is"])
        self.ref_gens = np.asarray(internal["ref_gens"], dtype=np.int64)
        self.ref_gen_bus = internal["gen"][self.ref_gens, 0].real.astype(np.int64)  # GEN_BUS
        self.gen_rows = {t: self._unit_rows(net, t) for t in ("ext_grid", "gen")}
        self.sgen_scale = (net.sgen.scaling * net.sgen.in_service).to_numpy(dtype=float)

    @staticmethod
    def _unit_rows(net, table: str) -> np.ndarray:
        """ppc gen row of each unit of `table`; -1 for units out of service (they produce 0)."""
        rows = np.full(len(net[table]), -1, dtype=np.int64)
        in_service = np.asarray(net._is_elements[table], dtype=bool)
        if in_service.any():
            rows[in_service] = np.asarray(net._pd2ppc_lookups[table])[net[table].index.to_numpy()[in_service]]
        return rows

    def supported(self) -> bool:
        """One slack unit per slack bus: pandapower splits a shared slack bus's power by rules
        this reader does not repeat."""
        return len(np.unique(self.ref_gen_bus)) == len(self.ref_gen_bus)

    def read(self, net) -> PowerFlowResults:
        from pandapower.pypower.idx_bus import PD
        from pandapower.pypower.idx_gen import PG

        internal = net._ppc["internal"]
        v = internal["V"]
        vm_all, va_all = np.abs(v), np.angle(v, deg=True)
        has_bus = self.bus_rows >= 0
        vm = np.where(has_bus, vm_all[np.maximum(self.bus_rows, 0)], np.nan)
        va = np.where(has_bus, va_all[np.maximum(self.bus_rows, 0)], np.nan)

        # |S| at both ends of every branch, and the current it carries (kA), as pandapower does
        s_from = np.abs(v[self.f_bus] * np.conj(internal["Yf"] @ v)) * self.base_mva
        s_to = np.abs(v[self.t_bus] * np.conj(internal["Yt"] @ v)) * self.base_mva
        current = np.zeros((self.n_ppc_branch, 2))
        current[self.ppci_branch_to_ppc, 0] = s_from / (vm_all[self.f_bus] * self.base_kv[self.f_bus]) / np.sqrt(3)
        current[self.ppci_branch_to_ppc, 1] = s_to / (vm_all[self.t_bus] * self.base_kv[self.t_bus]) / np.sqrt(3)

        f, t = self.line_range
        line_i = current[f:t].max(axis=1)
        line_loading = np.full_like(line_i, np.inf)
        np.divide(line_i, self.line_rating, where=self.line_rating != 0, out=line_loading)
        f, t = self.trafo_range
        trafo_loading = (current[f:t] * self.trafo_vn * np.sqrt(3) / self.trafo_sn[:, None] * 100.0).max(axis=1) / self.trafo_scale

        # Slack units take their bus's injection plus its load; the others produce their set-point.
        pg = net._ppc["gen"][:, PG].real.copy()
        ref_bus = self.ref_gen_bus
        injection = v[ref_bus] * np.conj(internal["Ybus"][ref_bus, :] @ v)
        pg[self.ppci_gen_to_ppc[self.ref_gens]] = injection.real * self.base_mva + internal["bus"][ref_bus, PD].real
        p_mw = {t: np.where(rows >= 0, pg[np.maximum(rows, 0)], 0.0) for t, rows in self.gen_rows.items()}
        p_mw["sgen"] = net.sgen.p_mw.to_numpy(dtype=float) * self.sgen_scale
        return PowerFlowResults(vm, va, line_loading * 100.0, trafo_loading, p_mw)
