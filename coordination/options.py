"""Settings of the look-ahead problems, shared by every coordination scheme."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from coordination.objective import Penalties, Prices


@dataclass
class Options:
    horizon: int = 24  # periods
    dt_hours: float = 1.0  # the first period's length (the coordination interval), and every period's ...
    # ... unless the horizon is multi-resolution: then each period's own length (hours), e.g.
    # 16 x 0.25 then 20 x 1.0 (15 minutes for 4 hours, hourly to 24). Energies, costs and
    # ramps use each period's length (`durations`).
    period_hours: tuple[float, ...] | None = None
    # Batteries' no-simultaneous-charge-and-discharge binaries:
    # "mip"             keeps them binary: every solve a MIP (exact, slow on large models);
    # "relaxed"         solves the LP relaxation only (a battery may charge and discharge at once);
    # "relax-and-check" solves the LP and, only if some battery then charges and discharges
    #                   at once, re-solves with the binaries integer (exact: an LP solution
    #                   without such periods is optimal for the MIP too);
    # "relax-and-fix"   solves the LP and, where a battery charges and discharges at once,
    #                   fixes its direction in that period to the sign of its net power and
    #                   re-solves the LP (warm), until no period is left (at most 10 rounds).
    #                   Never simultaneous, LP speed, not proven optimal: Result.lp_bound is the
    #                   first LP's objective, a lower bound on the MIP's.
    battery_binaries: str = "relax-and-fix"
    voltage_dependent_loads: bool = True
    # Regulators as fixed ratios ("fixed_ratio", updated with `update(ratios=...)`), or
    # holding the voltage on their load side ("hold", set with `update(held_voltage=...)`).
    regulators: str = "fixed_ratio"
    # The feeders' networks in the centralized problem: "full" LinDist3Flow (flows and voltages
    # as variables, the reference) or "reduced" (only the DERs' variables, the network through
    # its sensitivities, voltage and branch rows screened and added lazily; see
    # `coordination.reduced_feeder`); both with regulators "fixed_ratio" or "hold".
    feeder_model: str = "full"
    # Reduced feeders' voltage and branch rows: "lazy" starts with none and adds those a solution
    # breaks; "screened" also adds up front every row some DER combination within the units'
    # bounds could break (interval bound). Both check every row after each solve, so both give
    # the full model's optimum; on pv_centralized (100 % PV) screening kept twice the rows and
    # made the first solve 10x slower, the lazy loop needed 1-3 extra warm re-solves.
    feeder_rows: str = "lazy"
    feeder_flow_limits: bool = True
    polygon_sides: int = 8
    flow_limit_screen: float | None = 2.0  # see distribution.constraints_branch_limits; None = limit every branch
    transmission_losses: bool = False
    loss_segments: int = 4
    loss_flow_max_mw: float | None = None
    cost_segments: int = 4
    prices: Prices = field(default_factory=Prices)
    penalties: Penalties = field(default_factory=Penalties)
    # How HiGHS solves an LP with no basis to start from: the first solve of a model, and the
    # first after regulator ratios changed coefficients (which drops HiGHS' factorisation).
    # "ipm": interior point (ipx) with crossover, leaving a basis for the warm re-solves, which
    # always run the dual simplex; "simplex": the dual simplex from scratch; "auto": ipm from
    # `solver.IPM_MIN_COLUMNS` columns on. Measured with benchmarks/cold_solves.py (figures there).
    cold_solver: str = "auto"
    time_limit_s: float | None = None
    mip_rel_gap: float | None = 1e-6
    # After the first solve, move the model's objects out of the cyclic garbage collector's
    # reach (gc.freeze): it otherwise walks the millions of pyomo objects now and then,
    # adding 50-100 ms pauses to re-solves. The model then lives as long as the process.
    freeze_gc: bool = True

    def __post_init__(self) -> None:
        if self.period_hours is not None:
            self.period_hours = tuple(float(h) for h in self.period_hours)
            if len(self.period_hours) != self.horizon or min(self.period_hours) <= 0:
                raise ValueError(f"period_hours: {len(self.period_hours)} positive lengths needed for a horizon of "
                                 f"{self.horizon} periods")

    @property
    def uniform(self) -> bool:
        """Whether every period is dt_hours long."""
        return self.period_hours is None or all(h == self.dt_hours for h in self.period_hours)

    def durations(self) -> tuple[float, ...]:
        """Each period's length in hours."""
        return self.period_hours if self.period_hours is not None else (self.dt_hours,) * self.horizon


def as_durations(dt: float | Sequence[float], periods: Iterable[int]) -> dict[int, float]:
    """Period -> hours, from one length for all or a length per period (indexed by period)."""
    periods = list(periods)
    if isinstance(dt, (int, float)):
        return {t: float(dt) for t in periods}
    return {t: float(dt[t]) for t in periods}


def ramp_hours(dt: dict[int, float], periods: list[int]) -> dict[int, float]:
    """Hours between the middles of period t and the one before (of the first: its own length,
    the period before it being as long): what a ramp rate may move a period's mean by."""
    return {t: dt[t] if i == 0 else (dt[periods[i - 1]] + dt[t]) / 2 for i, t in enumerate(periods)}
