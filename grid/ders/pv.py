"""PV systems: OpenDSS PVSystem elements. The step's irradiance sets the available power,
the inverter's kVA limits the output, and an active-power cap (curtailment) and a
reactive-power set-point can be given from outside."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grid.ders.kind import Controller, FeederContext, Reading, SetpointPart, check_count
from grid.ders.placement import Connection


@dataclass
class PVUnit:
    name: str
    at: Connection
    pmpp_kw: float
    kva: float
    p_cap_pu: float = 1.0  # active-power cap as a share of Pmpp (curtailment); 1 = none
    q_kvar: float = 0.0  # reactive set-point when no inverter function controls Q


class PvController(Controller):
    """All PV systems of a feeder: one irradiance for all, set-points per unit."""

    key = "pv"
    SETPOINT = SetpointPart(dict[str, tuple[float, float]], (
        "`[p_cap_pu, q_kvar]`: PV active-power cap as a share of Pmpp (clipped to 0 … 1) and reactive power (+ injecting)"))
    READINGS = (
        Reading("pv_available_kw", "kW", "PV power the irradiance offers (one feeder copy)", total=True,
                meaning="Σ over the feeder's PV systems of Pmpp × irradiance / 1000 W/m2: what the sun offers, before inverter limits (may exceed the Pmpp total above 1000 W/m2)"),
        Reading("pv_kw", "kW", "PV power delivered (available minus curtailment and inverter limits)", total=True,
                meaning="PV active power delivered: available power limited by the inverters' kVA, curtailment set-points and Volt-Watt (equal to `pv_available_kw` when nothing limits it, within solver tolerance)"),
        Reading("pv_kvar", "kvar", "PV reactive power delivered", total=True,
                meaning="PV reactive power delivered (+ injecting): Volt-VAR or set-points, else ≈ 0"),
    )

    def __init__(self, ctx: FeederContext, spec):
        self.dss, self.alt = ctx.dss, ctx.alt
        self.irradiance_kw_m2 = ctx.irradiance_kw_m2  # the fleet's array itself: tests and forecasts read it
        self.units: list[PVUnit] = []
        if spec.penetration > 0:
            sites, pmpp = ctx.place(spec)
            self.units = [PVUnit(f"pv_{i}", at, pmpp, pmpp * spec.kva_ratio) for i, at in enumerate(sites)]
        for unit in self.units:
            self.dss.Text.Command(
                f"New PVSystem.{unit.name} phases={unit.at.phases} bus1={unit.at.bus} kV={unit.at.kv:.6g}{unit.at.conn_arg} "
                f"kVA={unit.kva:.6g} Pmpp={unit.pmpp_kw:.6g} irradiance=0 %cutin=0 %cutout=0 pf=1 kvarMax={unit.kva:.6g}"
            )
        self._sent: dict[str, tuple[float, float]] = {unit.name: (1.0, 0.0) for unit in self.units}
        self._setpoints_changed = False
        self._pmpp = np.array([u.pmpp_kw for u in self.units])
        self._irradiance_sent = 0.0  # what the PV systems hold now (created with none)
        self._pvsystems = ctx.dss.PVsystems

    def apply(self, k: int) -> None:
        irradiance = float(self.irradiance_kw_m2[k])
        if self.units and irradiance != self._irradiance_sent:  # the night's zeros are written once
            # The classic interface keeps the Y matrix valid (a batch write would not); its C
            # functions directly, one error check for the lot: 60 writes cost 25 us through the wrappers.
            pvsystems = self._pvsystems
            lib = pvsystems._lib
            lib.PVSystems_Get_First()  # creation order, as self.units
            for _ in self.units:
                lib.PVSystems_Set_Irradiance(irradiance)
                lib.PVSystems_Get_Next()
            pvsystems._check_for_error()
            self._irradiance_sent = irradiance
        if self._setpoints_changed:
            for unit in self.units:
                sent = (unit.p_cap_pu, unit.q_kvar)
                if self._sent[unit.name] != sent:  # text commands only for the units that changed
                    self.dss.Text.Command(f"Edit PVSystem.{unit.name} %Pmpp={unit.p_cap_pu * 100:.12g} kvar={unit.q_kvar:.12g}")
                    self._sent[unit.name] = sent
            self._setpoints_changed = False
        return None

    def set_setpoints(self, pv: dict[str, tuple[float, float]]) -> None:
        """(active-power cap as a share of Pmpp, clipped to 0..1; kvar) per unit name."""
        by_name = {u.name: u for u in self.units}
        for name, (cap, q) in pv.items():
            by_name[name].p_cap_pu, by_name[name].q_kvar = float(np.clip(cap, 0.0, 1.0)), float(q)
            self._setpoints_changed = True

    def caps_in_force(self) -> list[float]:
        """Each PV system's active-power cap as OpenDSS holds it (grid.dss_state probes with it)."""
        return [self._sent[unit.name][0] for unit in self.units]

    def readings(self, k: int) -> dict[str, np.ndarray]:
        pv = -self.alt.PVSystem.TotalPowers() if self.units else np.empty(0, dtype=complex)  # delivered
        return {"pv_available_kw": self._pmpp * self.irradiance_kw_m2[k], "pv_kw": pv.real, "pv_kvar": pv.imag}

    def state(self) -> dict:
        return {"pv": [[u.p_cap_pu, u.q_kvar] for u in self.units]}

    def restore(self, state: dict) -> None:
        """The caps and kvar, written into OpenDSS again where they differ from the defaults."""
        check_count(state["pv"], self.units, "pv")
        for unit, (cap, q) in zip(self.units, state["pv"]):
            unit.p_cap_pu, unit.q_kvar = cap, q
            if self._sent[unit.name] != (cap, q):  # now: an edit rebuilds the admittance matrix
                self.dss.Text.Command(f"Edit PVSystem.{unit.name} %Pmpp={cap * 100:.12g} kvar={q:.12g}")
                self._sent[unit.name] = (cap, q)
