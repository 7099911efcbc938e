"""The kinds of DER the look-ahead problems know, in the order they are built and read.

The order is part of the model: blocks, columns and objective terms follow it, and HiGHS'
path through a problem depends on that order."""

from __future__ import annotations

from coordination.ders.battery import Battery
from coordination.ders.dg import DG
from coordination.ders.ev import EV
from coordination.ders.flexible_load import FlexibleLoad
from coordination.ders.kind import DerKind
from coordination.ders.pv import PV

KINDS: tuple[DerKind, ...] = (PV(), Battery(), FlexibleLoad(), EV(), DG())
BY_NAME: dict[str, DerKind] = {kind.name: kind for kind in KINDS}
