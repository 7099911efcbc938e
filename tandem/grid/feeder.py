"""The distribution side: one three-phase OpenDSS feeder in its own DSS context.

Each feeder owns a DSS-Python context, so several feeders live in one process
without sharing OpenDSS state. The feeder's `Vsource.source` is driven by the
boundary voltage; its terminal powers are the substation P and Q per phase.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import opendssdirect

from feeder_models import BUNDLED_FEEDERS, bundled_feeder_master
from tandem.grid.errors import FeederModelError, PowerFlowError


def feeder_master_path(model: str) -> Path:
    """Master file of a bundled feeder name or a user's .dss path."""
    return bundled_feeder_master(model) if model in BUNDLED_FEEDERS else Path(model)


class FeederModel:
    """An OpenDSS feeder with its source set from the transmission side."""

    def __init__(self, name: str, model: str):
        self.name = name
        self.master = feeder_master_path(model)
        self.dss = opendssdirect.NewContext()
        cwd = os.getcwd()
        try:
            self.dss.Text.Command(f'compile "{self.master}"')
        except Exception as exc:  # DSS raises its own exception types; all mean "bad model"
            raise FeederModelError(f"feeder {name}: cannot compile {self.master}: {str(exc).strip()}") from None
        finally:
            os.chdir(cwd)  # OpenDSS moves the process into the model's folder
        if self.dss.Circuit.NumNodes() == 0:
            raise FeederModelError(f"feeder {name}: {self.master} defines no circuit")
        if "source" not in [n.lower() for n in self.dss.Vsources.AllNames()]:
            raise FeederModelError(f"feeder {name}: {self.master} has no Vsource.source to drive from the boundary")
        # Regulators with several taps to travel need more than the default 10 control rounds.
        self.dss.Solution.MaxControlIterations(100)
        self.dss.Vsources.Name("source")
        self._base_angle = self.dss.Vsources.AngleDeg()
        self.dss.Circuit.SetActiveElement("Vsource.source")
        if self.dss.CktElement.NumPhases() != 3:
            raise FeederModelError(f"feeder {name}: Vsource.source must be three-phase")
        source_bus = self.dss.CktElement.BusNames()[0].split(".")[0].lower()
        names = self.dss.Circuit.AllNodeNames()
        # The source bus stands for the transmission side; feeder statistics are about the feeder.
        self._feeder_nodes = np.array([n.split(".")[0].lower() != source_bus for n in names])
        self.node_names = [n for n, keep in zip(names, self._feeder_nodes) if keep]

    def run(self, voltage_pu: complex, level: float, label: str = "") -> None:
        """One feeder solve with the given complex boundary voltage (pu) and load level."""
        self.set_source(abs(voltage_pu), float(np.degrees(np.angle(voltage_pu))))
        self.set_load_level(level)
        self.solve(label)

    def set_source(self, vm_pu: float, va_deg: float) -> None:
        """Drive the source with the boundary voltage; the model's own angle offset is kept."""
        self.dss.Vsources.Name("source")
        self.dss.Vsources.PU(vm_pu)
        self.dss.Vsources.AngleDeg(self._base_angle + va_deg)

    def set_load_level(self, level: float) -> None:
        self.dss.Solution.LoadMult(level)

    def solve(self, label: str = "") -> None:
        self.dss.Solution.Solve()
        if not self.dss.Solution.Converged():
            raise PowerFlowError(f"feeder {self.name}: OpenDSS power flow did not converge{label}")

    def substation_power(self) -> tuple[np.ndarray, np.ndarray]:
        """Power drawn from the source per phase: P (kW) and Q (kvar), phases a, b, c."""
        self.dss.Circuit.SetActiveElement("Vsource.source")
        powers = np.asarray(self.dss.CktElement.Powers()[:6])
        return -powers[0::2], -powers[1::2]

    def voltage_extremes(self) -> tuple[float, int, float, int]:
        """Lowest and highest node voltage (pu) and their indices into `node_names`."""
        v = np.asarray(self.dss.Circuit.AllBusMagPu())[self._feeder_nodes]
        lo, hi = int(np.argmin(v)), int(np.argmax(v))
        return float(v[lo]), lo, float(v[hi]), hi
