"""Settings of the look-ahead problems, shared by every coordination scheme."""

from __future__ import annotations

from dataclasses import dataclass, field

from coordination.objective import Penalties, Prices


@dataclass
class Options:
    horizon: int = 24  # periods
    dt_hours: float = 1.0
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
    # always run the dual simplex; "simplex": the dual simplex from scratch. Measured with
    # benchmarks/cold_solves.py (figures there).
    cold_solver: str = "ipm"
    time_limit_s: float | None = None
    mip_rel_gap: float | None = 1e-6
    # After the first solve, move the model's objects out of the cyclic garbage collector's
    # reach (gc.freeze): it otherwise walks the millions of pyomo objects now and then,
    # adding 50-100 ms pauses to re-solves. The model then lives as long as the process.
    freeze_gc: bool = True
