"""The DERs and local controls of one feeder: one controller per kind (grid.ders.registry),
driven together step by step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from grid.ders.battery import BatteryUnit
from grid.ders.ev import EVCharger
from grid.ders.kind import NONE, Controller, FeederContext, unknown_names
from grid.ders.placement import feeder_loads
from grid.ders.pv import PVUnit
from grid.ders.registry import KINDS, READINGS

if TYPE_CHECKING:  # the message is built from the kinds table this package declares
    from grid.setpoints import Setpoints


class DerFleet:
    """The DERs and local controls of one feeder, and their state between steps."""

    def __init__(self, dss, alt, spec, step_hours: float, local_hours: np.ndarray, irradiance_w_m2: np.ndarray,
                 load_shape: np.ndarray):
        """`spec` is the scenario's feeder spec; `load_shape` the feeder's load level per step
        (flexible loads' baseline)."""
        self.dss = dss
        self.alt = alt
        self.step_hours = step_hours
        self.local_hours = local_hours
        self.irradiance_kw_m2 = np.asarray(irradiance_w_m2) / 1000.0
        ctx = FeederContext(dss, alt, step_hours, local_hours, feeder_loads(dss), np.random.default_rng(spec.seed),
                            self.irradiance_kw_m2, load_shape)
        for kind in KINDS:
            ctx.controllers[kind.key] = kind(ctx, getattr(spec, kind.key))
        self.controllers: dict[str, Controller] = ctx.controllers
        self._controllers = tuple(ctx.controllers.values())
        # Each step drives only the kinds with units; the others read empty, in declared order.
        self._active = tuple(c for c in self._controllers if not c.idle())
        self._empty_readings = {r.name: NONE for r in READINGS}
        # Typed shorthands for the kinds the feeder model itself reads (others: `units(key)`).
        c = self.controllers
        self.pv: list[PVUnit] = c["pv"].units
        self.batteries: list[BatteryUnit] = c["battery"].units
        self.evs: list[EVCharger] = c["ev"].units
        self.regulators: list[str] = c["controls"].regulators
        self.capacitors: list[str] = c["controls"].capacitors
        self.inverter_controls: bool = c["controls"].inverter_controls

    def units(self, key: str) -> list:
        """The units of a kind, by its key in the kinds table (pv, battery, dg, ...)."""
        return self.controllers[key].units

    def apply(self, k: int) -> np.ndarray:
        """Step k's inputs into OpenDSS, kind by kind; returns the kW of the loads the kinds
        created (EV chargers, flexible loads, in creation order), which the feeder writes
        with its own loads."""
        loads = [kw for kw in (c.apply(k) for c in self._active) if kw is not None]
        if not loads:
            return NONE
        return loads[0] if len(loads) == 1 else np.concatenate(loads)

    def set_setpoints(self, setpoints: Setpoints) -> None:
        """Set-points from outside, kept until changed; each part goes to the controller of its
        kind (`grid.setpoints.Setpoints` says what each takes). Names are checked first: an
        unknown one changes nothing."""
        parts = setpoints.parts()
        for key, values in parts.items():
            unknown = unknown_names(values, self.controllers[key].units)
            if unknown:
                raise KeyError(f"unknown DER {unknown[0]!r}")
        for key, values in parts.items():
            self.controllers[key].set_setpoints(values)

    def advance(self) -> None:
        """The step is final: book its energy (battery SOC, energy owed, ramp references)."""
        for controller in self._active:
            controller.advance()

    def readings(self, k: int) -> dict[str, np.ndarray]:
        """Every reading of grid.ders.registry.READINGS after the solve of step k, in that
        order, one value per unit (arrays that belong to the fleet are read-only)."""
        out = dict(self._empty_readings)
        for controller in self._active:
            out.update(controller.readings(k))
        return out

    def devices(self) -> dict[str, list[str]]:
        """Names along each device dimension of the readings (battery, regulator, dg, ...)."""
        out: dict[str, list[str]] = {}
        for controller in self._controllers:
            out.update(controller.devices())
        return out

    def pv_caps(self) -> list[float]:
        """The PV systems' active-power caps in force in OpenDSS (grid.dss_state probes with them)."""
        return self.controllers["pv"].caps_in_force()

    # -- checkpoints --------------------------------------------------------
    def state(self) -> dict:
        """Everything the fleet carries from step to step, taken after a solve and before
        `advance` (so the step's energy is booked again on restore): JSON-ready, one entry
        per kind ("pv", "battery", ...; kinds without units added since write none)."""
        out: dict = {}
        for controller in self._controllers:
            out.update(controller.state())
        return out

    def restore(self, state: dict) -> None:
        """Inverse of `state` on a freshly built fleet: the Python state, and the set-points
        written into OpenDSS again, exactly as they were."""
        for controller in self._controllers:
            controller.restore(state)
