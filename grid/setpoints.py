"""DER set-points: the one message every producer (the built-in coordinator, an external
federate, a Python study) sends and every consumer (the feeder model, its checkpoint journal,
the coordinator's own EV bookkeeping) reads.

The grid model declares what it accepts, so it lives here. On the wire it is the JSON of
`Setpoints.to_json()` (docs/interfaces.md), the same shape external coordinators have always
sent: {"pv": {name: [p_cap_pu, q_kvar]}, "battery": {name: p_kw | [p_kw, q_kvar] | null},
"ev": {name: p_kw}, "dg": {name: [p_kw, q_kvar] | null}, "flexible_load": {name: shift_kw | null}},
every part optional. Each part is named as its DER kind (`grid.ders.registry.KINDS` keys).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field


class Setpoints(BaseModel):
    """Set-points for one feeder's DERs, by DER name (as in the feeder metadata). A message
    changes only the DERs it names; each set-point holds until it is replaced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pv: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="`[p_cap_pu, q_kvar]`: PV active-power cap as a share of Pmpp (clipped to 0 … 1) and reactive power (+ injecting)")
    battery: dict[str, float | tuple[float, float] | None] = Field(
        default_factory=dict,
        description="`p_kw`, `[p_kw, q_kvar]` or `null`: battery power (+ discharging) replacing its schedule, with "
                    "reactive power; `null` hands the battery back to its schedule")
    ev: dict[str, float] = Field(default_factory=dict, description="`p_kw`: EV charging power limit (negative counts as 0)")
    dg: dict[str, tuple[float, float] | None] = Field(
        default_factory=dict,
        description="`[p_kw, q_kvar]` or `null`: dispatchable generator output (clipped to its rating, kVA circle, ramp and, "
                    "with commitment, minimum stable output); `null` hands the generator back to its schedule")
    flexible_load: dict[str, float | None] = Field(
        default_factory=dict,
        description="`shift_kw` or `null`: consumption a flexible load moves from its baseline (+ more; clipped to its limits "
                    "and never below zero consumption); `null` returns it to its baseline")

    @classmethod
    def from_json(cls, text: str) -> "Setpoints":
        # json.loads, not pydantic's own parser: the floats must come out exactly as the
        # standard library wrote them, for results equal to the bit.
        return cls.model_validate(json.loads(text))

    @classmethod
    def from_journal(cls, saved: dict) -> "Setpoints":
        """A set-point entry of a feeder's checkpoint journal: `to_dict()`'s form, or the keyword
        form of checkpoints written before this model ({"pv", "batteries", "battery_kvar", "evs"})."""
        if not {"batteries", "battery_kvar", "evs"} & saved.keys():
            return cls.model_validate(saved)
        kvar = saved.get("battery_kvar") or {}
        battery = {name: p if name not in kvar else (p, kvar[name]) for name, p in (saved.get("batteries") or {}).items()}
        return cls(pv=saved.get("pv") or {}, battery=battery, ev=saved.get("evs") or {})

    def to_json(self) -> str:
        """The wire form: only the parts that hold something, values as plain JSON numbers."""
        return json.dumps(self.to_dict())

    def to_dict(self) -> dict:
        """JSON-ready (pairs as lists), without empty parts; also the form a checkpoint journal keeps.
        Not model_dump(mode="json"), which would turn a NaN into null (a battery's "back to schedule")."""
        return {
            key: {name: list(v) if isinstance(v, tuple) else v for name, v in part.items()}
            for key, part in self.model_dump().items() if part
        }

    def parts(self) -> dict[str, dict]:
        """The non-empty parts by DER kind key (pv, battery, ev, dg, flexible_load)."""
        return {key: getattr(self, key) for key in type(self).model_fields if getattr(self, key)}

