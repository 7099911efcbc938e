"""New data for a look-ahead problem between solves: forecasts and measurements, typed.

`Update` holds the transmission data and a `FeederUpdate` per feeder; every problem
(`CentralizedProblem`, the DSO's `FeederProblem`, the TSO's `TransmissionProblem`, the
schemes) takes one, each the part it models. `Update.of` and `FeederUpdate.of` build them from
keywords: the network's below, and the DER kinds' own (`DerKind.inputs`, e.g.
`pv_available_kw`), values by feeder, then unit.

Per-period values are arrays over the horizon (or one number for all periods). Feeder data:
`load_levels` [load, period] in the order of `FeederData.loads` (as `FeederModel.load_levels`),
`node_loads` = (nodes, P kW [node, period], Q kvar [node, period]), `ratios` a FeederData with
the present regulator taps, `held_voltage` the voltage (pu) each regulator holds, by
(bus, phase) (regulators="hold"), `head_voltage` the boundary voltage (pu).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from coordination.ders.registry import KINDS
from coordination.network_data import FeederData

# keyword -> (kind, input) for the DER data of every kind
DER_KEYWORDS = {i.keyword: (kind, i) for kind in KINDS for i in kind.inputs}


@dataclass
class FeederUpdate:
    """One feeder's new data (see the module docstring); `ders[kind][unit][keyword]` the units'."""

    load_levels: np.ndarray | None = None
    node_loads: tuple[list, np.ndarray, np.ndarray] | None = None
    head_voltage: object = None
    ratios: FeederData | None = None
    held_voltage: Mapping | None = None
    ders: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict)

    @classmethod
    def of(cls, **values) -> "FeederUpdate":
        """From keywords of one feeder: the fields above, and DER keywords {unit: value}."""
        out = cls()
        for key, value in values.items():
            if value is None:
                continue
            if key in DER_KEYWORDS:
                kind, _ = DER_KEYWORDS[key]
                for unit, v in value.items():
                    out.ders.setdefault(kind.name, {}).setdefault(unit, {})[key] = v
            elif key in _FEEDER_FIELDS:
                setattr(out, key, value)
            else:
                raise TypeError(f"unknown feeder data {key!r}")
        return out

    def der_keywords(self) -> dict[str, dict[str, object]]:
        """The units' data back as keywords {keyword: {unit: value}}."""
        out: dict[str, dict[str, object]] = {}
        for units in self.ders.values():
            for unit, values in units.items():
                for key, v in values.items():
                    out.setdefault(key, {})[unit] = v
        return out


_FEEDER_FIELDS = {f.name for f in fields(FeederUpdate)} - {"ders"}


@dataclass
class Update:
    """A problem's new data: transmission (loads by bus, generator limits and previous
    dispatch, MW), copies behind each feeder, and each feeder's `FeederUpdate`."""

    bus_load_mw: Mapping[int, object] | np.ndarray | None = None
    gen_p_max_mw: Mapping[str, object] | None = None
    gen_p_min_mw: Mapping[str, object] | None = None
    gen_p_prev_mw: Mapping[str, float] | None = None
    multipliers: Mapping[str, float] | None = None
    feeders: dict[str, FeederUpdate] = field(default_factory=dict)

    @classmethod
    def of(cls, **values) -> "Update":
        """From keywords: the transmission fields above, and feeder keywords {feeder: value}
        (as `FeederUpdate.of` takes them for one feeder)."""
        out = cls()
        per_feeder: dict[str, dict[str, object]] = {}
        for key, value in values.items():
            if key in _TRANSMISSION_FIELDS:
                setattr(out, key, value)
            elif key in DER_KEYWORDS or key in _FEEDER_FIELDS:
                for feeder, v in (value or {}).items():
                    per_feeder.setdefault(feeder, {})[key] = v
            else:
                raise TypeError(f"unknown data {key!r}")
        out.feeders = {name: FeederUpdate.of(**kw) for name, kw in per_feeder.items()}
        return out


_TRANSMISSION_FIELDS = {f.name for f in fields(Update)} - {"feeders"}
