"""OpenDSS models of the IEEE test feeders bundled with Tandem.

The models are written for Tandem from the published IEEE PES Distribution
System Analysis Subcommittee test feeder data (line configurations, segment,
load, capacitor, regulator, transformer and switch tables). Each feeder lives
in its own folder with a ``master.dss`` that:

* defines the circuit source as the default ``Vsource.source`` (3-phase), whose
  ``pu`` and ``angle`` the co-simulation sets before every solve;
* redirects to its other files with relative paths only, so it can be compiled
  from any working directory with ``compile "<absolute path to master.dss>"``;
* sets the voltage bases (``Set VoltageBases`` + ``CalcVoltageBases``) but
  never solves.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED_FEEDERS", "bundled_feeder_master"]

BUNDLED_FEEDERS: dict[str, str] = {
    "ieee13": "IEEE 13-node test feeder: 4.16 kV, fed from 115 kV via the substation transformer",
    "ieee123": "IEEE 123-node test feeder: 4.16 kV, source at bus 150, four regulators",
}

_MODELS_DIR = Path(__file__).resolve().parent


def bundled_feeder_master(name: str) -> Path:
    """Return the absolute path of the master .dss file of a bundled feeder.

    Raises ValueError if ``name`` is not a key of ``BUNDLED_FEEDERS``.
    """
    if name not in BUNDLED_FEEDERS:
        known = ", ".join(sorted(BUNDLED_FEEDERS))
        raise ValueError(f"unknown bundled feeder {name!r}; known feeders: {known}")
    return _MODELS_DIR / name / "master.dss"
