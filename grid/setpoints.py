"""DER set-points: the one message every producer (the built-in coordinator, an external
federate, a Python study) sends and every consumer (the feeder model, its checkpoint journal,
the coordinator's own EV bookkeeping) reads.

The grid model declares what it accepts, so it lives here, and each DER kind declares its
own part (`SETPOINT` on its controller in `grid.ders`): the message has one optional part per
kind that takes set-points, named as the kind's key, in the kinds table's order. On the
wire it is the JSON of `Setpoints.to_json()` (docs/interfaces.md has the table of parts),
the same shape external coordinators have always sent, e.g.
{"pv": {name: [p_cap_pu, q_kvar]}, "battery": {name: p_kw | [p_kw, q_kvar] | null}, ...}.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, create_model

from grid.ders.registry import KINDS


class _Message(BaseModel):
    """Set-points for one feeder's DERs, by DER name (as in the feeder metadata). A message
    changes only the DERs it names; each set-point holds until it is replaced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
        """The non-empty parts by DER kind key (pv, battery, ...)."""
        return {key: getattr(self, key) for key in type(self).model_fields if getattr(self, key)}


# One field per kind that takes set-points, declared by the kind (pydantic's create_model is
# its documented way to build a model from data).
Setpoints = create_model(
    "Setpoints", __base__=_Message, __module__=__name__, __doc__=_Message.__doc__,
    **{kind.key: (kind.SETPOINT.type, Field(default_factory=dict, description=kind.SETPOINT.description))
       for kind in KINDS if kind.SETPOINT is not None},
)
