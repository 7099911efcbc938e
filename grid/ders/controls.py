"""Local controls: the feeder's regulators and capacitor banks (devices, not DERs) and the PV
inverter functions (Volt-VAR, Volt-Watt), all OpenDSS control elements that act within the
solve. Nothing to dispatch; their positions are read after each solve."""

from __future__ import annotations

import numpy as np

from grid.ders.kind import NONE, Controller, FeederContext, Reading, read_only

# IEEE 1547-2018 category B default curves (per-unit voltage -> per-unit reactive power / active power).
VOLT_VAR_CURVE = ((0.5, 0.44), (0.92, 0.44), (0.98, 0.0), (1.02, 0.0), (1.08, -0.44), (1.5, -0.44))
VOLT_WATT_CURVE = ((0.5, 1.0), (1.06, 1.0), (1.10, 0.2), (1.5, 0.2))


def _curve(dss, name: str, points: tuple[tuple[float, float], ...]) -> None:
    xs = " ".join(f"{x:g}" for x, _ in points)
    ys = " ".join(f"{y:g}" for _, y in points)
    dss.Text.Command(f"New XYCurve.{name} npts={len(points)} Xarray=[{xs}] Yarray=[{ys}]")


class LocalControls(Controller):
    """Regulators (tapping or held), capacitor controls, and inverter functions on the PV
    systems (built before, see FeederContext.controllers)."""

    key = "controls"
    READINGS = (
        Reading("regulator_taps", "", "tap position", device="regulator", dtype="i2",
                meaning="tap position of each regulator control after the step's solve"),
        Reading("capacitor_steps", "", "energised steps", device="capacitor", dtype="i2",
                meaning="energised steps of each capacitor bank after the step's solve (0 = off; the bundled banks have one step)"),
    )

    def __init__(self, ctx: FeederContext, controls):
        dss = self.dss = ctx.dss
        self.alt = ctx.alt
        self.units = []
        pv = ctx.controllers["pv"].units
        if not controls.regulators and dss.RegControls.Count():
            for name in dss.RegControls.AllNames():
                dss.Text.Command(f"RegControl.{name}.enabled=no")
        if controls.capacitors and dss.Capacitors.Count():
            for name in dss.Capacitors.AllNames():
                dss.Circuit.SetActiveElement(f"Capacitor.{name}")
                bus = dss.CktElement.BusNames()[0].split(".")[0]
                dss.Circuit.SetActiveBus(bus)
                volts = dss.Bus.kVBase() * 1000.0
                # Voltage control on the bank's own terminal (PT ratio 1, so settings are in volts).
                dss.Text.Command(
                    f"New CapControl.cc_{name} Capacitor={name} Element=Capacitor.{name} Terminal=1 type=voltage "
                    f"PTratio=1 ON={0.98 * volts:.6g} OFF={1.04 * volts:.6g} Delay=0 DelayOFF=0"
                )
        self.inverter_controls = bool((controls.volt_var or controls.volt_watt) and pv)
        self.volt_var_delta_q: float | None = None  # OpenDSS's adaptive step
        if self.inverter_controls:
            modes = []
            if controls.volt_var:
                _curve(dss, "tandem_volt_var", VOLT_VAR_CURVE)
                modes.append("vvc_curve1=tandem_volt_var")
            if controls.volt_watt:
                _curve(dss, "tandem_volt_watt", VOLT_WATT_CURVE)
                modes.append("voltwatt_curve=tandem_volt_watt VoltwattYAxis=PMPPPU")
            mode = "CombiMode=VV_VW" if controls.volt_var and controls.volt_watt else (
                "Mode=VOLTVAR" if controls.volt_var else "Mode=VOLTWATT")
            names = " ".join(f"PVSystem.{u.name}" for u in pv)
            dss.Text.Command(
                f"New InvControl.tandem_inverters DERList=[{names}] {mode} {' '.join(modes)} "
                "voltage_curvex_ref=rated RefReactivePower=VARMAX EventLog=no"
            )
        self.regulators: list[str] = list(dss.RegControls.AllNames()) if dss.RegControls.Count() else []
        self.capacitors: list[str] = list(dss.Capacitors.AllNames()) if dss.Capacitors.Count() else []
        self._capacitors_switch = dss.CapControls.Count() > 0
        self._capacitor_steps: np.ndarray | None = None if self.capacitors else NONE

    def set_volt_var_delta_q(self, factor: float | None) -> None:
        """The share of the way to the Volt-VAR curve each inverter moves per control round
        (InvControl DeltaQ_factor); None: OpenDSS's adaptive step, from 0.5 down to about 0.1."""
        if self.inverter_controls and factor != self.volt_var_delta_q:
            self.dss.Text.Command(f"Edit InvControl.tandem_inverters DeltaQ_factor={-1.0 if factor is None else factor:.12g}")
            self.volt_var_delta_q = factor

    def idle(self) -> bool:
        return False  # regulators and capacitors are read every step, the feeder's own or none

    def devices(self) -> dict[str, list[str]]:
        return {"regulator": list(self.regulators), "capacitor": list(self.capacitors)}

    def _read_capacitor_steps(self) -> list[int]:
        """Energised steps of each capacitor bank; the classic interface, by index (all banks,
        enabled or not), takes a fifth of AltDSS's time for a few banks."""
        capacitors = self.dss.Capacitors
        steps = []
        for i in range(1, len(self.capacitors) + 1):
            capacitors.Idx(i)
            steps.append(sum(capacitors.States()))
        return steps

    def readings(self, k: int) -> dict[str, np.ndarray]:
        taps = self.alt.RegControl.TapNum.to_array().astype(float) if self.regulators else np.empty(0)
        caps = self._capacitor_steps
        if caps is None:
            caps = read_only(np.array(self._read_capacitor_steps(), dtype=float))
            if not self._capacitors_switch:  # without a CapControl no bank switches: read once
                self._capacitor_steps = caps
        return {"regulator_taps": taps, "capacitor_steps": caps}
