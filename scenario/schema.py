"""Scenario files: schema, loading and validation.

A scenario is a YAML or TOML file (or the built-in default study). Everything a run
needs is in it; the launcher resolves it once (paths made absolute, defaults filled
in) and hands the resolved JSON to every federate, so data flows one way:
scenario file -> launcher -> federates -> HDF5 -> report.

Checks that need no network data happen here (types, unknown keys, units, missing
files). Checks against the transmission network (unknown buses) happen in
`grid.transmission.check_boundary_buses` (on a cached summary of the network), still
before any process starts.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PlainSerializer,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from feeder_models import BUNDLED_FEEDERS
from timeseries.profiles import LOAD_SHAPES

# Every network function pandapower 3.5.6 ships that needs no argument (pandapower.networks:
# the power-system test cases, CIGRE, Kerber, Dickert, IEEE European LV, ...), listed here so
# validating needs no pandapower; tests/test_hostile_input.py checks the list against the
# installed pandapower, so an upgrade that adds or drops one fails there.
BUILTIN_CASES = (
    "GBnetwork", "GBreducednetwork", "case118", "case11_iwamoto", "case1354pegase", "case14", "case145",
    "case1888rte", "case24_ieee_rts", "case2848rte", "case2869pegase", "case30", "case300", "case3120sp",
    "case33bw", "case39", "case4gs", "case5", "case57", "case6470rte", "case6495rte", "case6515rte",
    "case6ww", "case89pegase", "case9", "case9241pegase", "case_ieee30", "case_illinois200",
    "create_cigre_network_hv", "create_cigre_network_lv", "create_cigre_network_mv",
    "create_dickert_lv_network", "create_kerber_dorfnetz", "create_kerber_landnetz_freileitung_1",
    "create_kerber_landnetz_freileitung_2", "create_kerber_landnetz_kabel_1", "create_kerber_landnetz_kabel_2",
    "create_kerber_vorstadtnetz_kabel_1", "create_kerber_vorstadtnetz_kabel_2",
    "create_synthetic_voltage_control_lv_network", "example_multivoltage", "example_simple",
    "four_loads_with_branches_out", "iceland", "ieee_european_lv_asymmetric", "kb_extrem_dorfnetz",
    "kb_extrem_dorfnetz_trafo", "kb_extrem_landnetz_freileitung", "kb_extrem_landnetz_freileitung_trafo",
    "kb_extrem_landnetz_kabel", "kb_extrem_landnetz_kabel_trafo", "kb_extrem_vorstadtnetz_1",
    "kb_extrem_vorstadtnetz_2", "kb_extrem_vorstadtnetz_trafo_1", "kb_extrem_vorstadtnetz_trafo_2",
    "lv_schutterwald", "mv_oberrhein", "panda_four_load_branch", "simple_four_bus_system",
    "simple_mv_open_ring_net",
)
# SimBench grids by code (the `simbench` package), e.g. "simbench:1-HV-mixed--0-no_sw".
SIMBENCH_PREFIX = "simbench:"
_SIMBENCH_CODE = re.compile(r"[1-9]-[A-Za-z_]+-[A-Za-z0-9_]*-[A-Za-z0-9_.]*-[0-9]-(sw|no_sw)")
NETWORK_FILE_SUFFIXES = (".json", ".m", ".mat")
PGLIB_RATED = ("case118",)  # networks grid/ratings.py has PGLib-OPF ratings for (grid/data/)
DEFAULT_SCENARIO = Path(__file__).with_name("default_scenario.yaml")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message is one line naming the culprit."""


def _parse_duration(value: object, allow_zero: bool = False) -> pd.Timedelta:
    """Durations must carry units ('5min', '300s', '2d'); bare numbers are ambiguous."""
    if isinstance(value, pd.Timedelta):
        return value
    if isinstance(value, bool) or isinstance(value, (int, float)):
        raise ValueError(f"give a duration with units such as '5min', '300s' or '2d' (got bare number {value!r})")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration string such as '5min' (got {type(value).__name__})")
    if re.fullmatch(r"\s*[-+]?[0-9.eE+-]+\s*", value):
        raise ValueError(f"give a duration with units such as '5min', '300s' or '2d' (got bare number {value!r})")
    try:
        parsed = pd.Timedelta(value)
    except ValueError:
        raise ValueError(f"cannot read {value!r} as a duration; use units such as '5min', '300s', '2d'") from None
    if parsed < pd.Timedelta(0) or (parsed == pd.Timedelta(0) and not allow_zero):
        raise ValueError(f"duration must be {'zero or ' if allow_zero else ''}positive (got {value!r})")
    return parsed


def duration_text(td: pd.Timedelta) -> str:
    """'365d', '1s', '5min', '1d6h': a duration as a scenario writes it."""
    seconds, parts = int(td.total_seconds()), []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or ("0s" if td.total_seconds() == 0 else str(td))


Duration = Annotated[
    pd.Timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(lambda td: td.isoformat(), return_type=str),
]
NonNegativeDuration = Annotated[
    pd.Timedelta,
    BeforeValidator(lambda value: _parse_duration(value, allow_zero=True)),
    PlainSerializer(lambda td: td.isoformat(), return_type=str),
]


def _check_time_zone(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use IANA names such as 'Europe/Berlin' or 'UTC')") from None
    return value


def _check_profile(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("a built-in profile is named by a string")
    if value not in LOAD_SHAPES:
        raise ValueError(f"unknown load profile {value!r}; built-in profiles: {', '.join(LOAD_SHAPES)}")
    return value


ProfileName = Annotated[str, BeforeValidator(_check_profile)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)


class ProfileFile(_Strict):
    """A time series from a CSV or Parquet file, resampled to the run's step."""

    file: str = Field(description="CSV or Parquet file, relative to the scenario file")
    column: str | None = Field(None, description="value column; default: the only non-time column")
    timestamp_column: str = Field("timestamp", description="column of timestamps (ISO 8601, with or without zone)")
    start: datetime | None = Field(None, description="for files of bare values: time of the first value")
    resolution: Duration | None = Field(None, description="for files of bare values: their spacing, with units")
    units: str | None = Field(None, description="units of the values, when the column name carries none (e.g. 'kW', 'W/m2', 'pu')")
    tz: Annotated[str | None, AfterValidator(_check_time_zone)] = Field(
        None, description="time zone of naive timestamps in the file (e.g. 'Europe/Berlin')"
    )


class TransmissionSpec(_Strict):
    """The transmission network and how its own (non-feeder) loads vary in time."""

    network: str = Field(
        "case118",
        description=(
            "a network function pandapower ships (e.g. case118, case1354pegase, GBnetwork, mv_oberrhein), "
            "a SimBench grid as 'simbench:<code>' (e.g. simbench:1-HV-mixed--0-no_sw; needs the simbench package), "
            "or a path to a pandapower JSON or MATPOWER (.m/.mat) file"
        ),
    )
    load_profile: ProfileName = Field("system", description="built-in load shape that scales the network's own loads")
    scale_generation: bool = Field(
        True, description="scale generator dispatch with the system load level so the slack does not carry all variation"
    )
    ratings: Literal["case", "pglib"] = Field(
        "case",
        description="branch thermal ratings: 'case' as the network gives them (pandapower's case118: 41 kA lines, 9900 MVA "
                    "transformers, never binding), 'pglib' PGLib-OPF's published rate_a (case118; grid/ratings.py)",
    )

    @model_validator(mode="after")
    def _rated_network(self) -> "TransmissionSpec":
        if self.ratings == "pglib" and self.network not in PGLIB_RATED:
            raise ValueError(f"ratings 'pglib' are known for {', '.join(PGLIB_RATED)} only, not network {self.network!r}")
        return self

    @field_validator("network")
    @classmethod
    def _known_network(cls, value: str) -> str:
        if value in BUILTIN_CASES or Path(value).suffix.lower() in NETWORK_FILE_SUFFIXES:
            return value
        if value.startswith(SIMBENCH_PREFIX):
            code = value[len(SIMBENCH_PREFIX):]
            if not _SIMBENCH_CODE.fullmatch(code):
                raise ValueError(f"{code!r} is not a SimBench code such as '1-HV-mixed--0-no_sw' "
                                 "(simbench.collect_all_simbench_codes() lists them)")
            return value
        close = [c for c in BUILTIN_CASES if c.lower() == value.lower()]
        raise ValueError(
            f"unknown network {value!r}: " + (f"did you mean {close[0]!r}? " if close else "")
            + f"give a pandapower network ({', '.join(sorted(BUILTIN_CASES)[:6])}, ... {len(BUILTIN_CASES)} in all), "
            f"'simbench:<code>', or a file ending in {', '.join(NETWORK_FILE_SUFFIXES)}"
        )


def hours_window(window: tuple[float, float]) -> tuple[float, float]:
    """A daily window [start, end) in local hours: two different hours in 0..24 (may wrap midnight)."""
    if not all(0 <= h <= 24 for h in window) or window[0] == window[1]:
        raise ValueError(f"a window is two different hours of the day in 0..24 (got {window})")
    return window


class PVSpec(_Strict):
    """PV systems in a feeder."""

    penetration: float = Field(0.0, ge=0, le=10, description="total PV rating (Pmpp) as a share of the feeder's peak load (0.5 = 50 %)")
    count: PositiveInt | None = Field(None, description="number of PV systems; default: one per chosen load bus, at most 100")
    phases: Literal["load", "single", "three"] = Field("load", description="connect like the load at the bus, single-phase, or three-phase buses only")
    buses: list[str] | None = Field(None, description="explicit buses (e.g. '48' or '7.1') instead of seeded random load buses")
    kva_ratio: float = Field(1.1, ge=1.0, le=2.0, description="inverter kVA over Pmpp")


class BatterySpec(_Strict):
    """Batteries in a feeder."""

    penetration: float = Field(0.0, ge=0, le=10, description="total power rating as a share of the feeder's peak load")
    hours: float = Field(2.0, gt=0, description="energy over power rating (kWh per kW)")
    count: PositiveInt | None = Field(None, description="number of batteries; default: one per chosen load bus, at most 100")
    phases: Literal["load", "single", "three"] = "load"
    buses: list[str] | None = None
    efficiency_charge: float = Field(0.95, gt=0, le=1)
    efficiency_discharge: float = Field(0.95, gt=0, le=1)
    soc_min: float = Field(0.1, ge=0, lt=1)
    soc_max: float = Field(0.95, gt=0, le=1)
    soc_initial: float = Field(0.5, ge=0, le=1)
    schedule: Literal["idle", "time_of_day"] = Field("time_of_day", description="dispatch when no set-points come from outside")
    charge_hours: tuple[float, float] = Field((10.0, 15.0), description="local hours [start, end) of the charging window; may wrap midnight, e.g. (22, 6)")
    discharge_hours: tuple[float, float] = Field((17.0, 21.0), description="local hours [start, end) of the discharging window; may wrap midnight")

    @field_validator("charge_hours", "discharge_hours")
    @classmethod
    def _hours_of_day(cls, window: tuple[float, float]) -> tuple[float, float]:
        return hours_window(window)

    @model_validator(mode="after")
    def _soc_order(self) -> "BatterySpec":
        if not self.soc_min <= self.soc_initial <= self.soc_max:
            raise ValueError(f"need soc_min <= soc_initial <= soc_max (got {self.soc_min}, {self.soc_initial}, {self.soc_max})")
        return self


class EVSpec(_Strict):
    """EV chargers: flexible loads with charging sessions and the energy still owed tracked."""

    penetration: float = Field(0.0, ge=0, le=10, description="total charger rating as a share of the feeder's peak load")
    charger_kw: float = Field(7.2, gt=0, description="rating of one charger")
    energy_kwh: tuple[float, float] = Field((8.0, 30.0), description="range of energy an EV needs per session")
    arrival_hours: tuple[float, float] = Field((17.0, 20.0), description="range of local arrival hours")
    departure_hours: tuple[float, float] = Field((6.0, 8.0), description="range of local departure hours (next day)")


class DGSpec(_Strict):
    """Dispatchable distributed generators (diesel or gas gensets): P and Q within their
    ratings, ramp limits, a convex piecewise-linear cost curve, optionally unit commitment
    (minimum stable output, minimum up and down times, start-up cost)."""

    penetration: float = Field(0.0, ge=0, le=10, description="total rating as a share of the feeder's peak load")
    count: PositiveInt | None = Field(None, description="number of gensets; default: one per chosen load bus, at most 100")
    phases: Literal["load", "single", "three"] = Field("three", description="connect like the load at the bus, single-phase, or three-phase buses only")
    buses: list[str] | None = Field(None, description="explicit buses instead of seeded random load buses")
    kva_ratio: float = Field(1.25, ge=1.0, le=2.0, description="apparent-power rating over the kW rating (Q within the kVA circle)")
    ramp_pu_per_hour: float | None = Field(None, gt=0, description="largest change of output per hour as a share of the rating; None: no ramp limit")
    cost_per_mwh: list[Annotated[float, Field(ge=0)]] = Field(
        [150.0], min_length=1,
        description="marginal cost of each equal-width segment of the output range, non-decreasing (a convex cost curve), per MWh",
    )
    commitment: bool = Field(False, description="on/off decisions (binaries): minimum stable output, minimum up/down times and start-up cost apply")
    p_min_pu: float = Field(0.3, ge=0, lt=1, description="with commitment: minimum stable output when on, as a share of the rating")
    min_up_hours: float = Field(0.0, ge=0, description="with commitment: shortest time a started unit stays on")
    min_down_hours: float = Field(0.0, ge=0, description="with commitment: shortest time a stopped unit stays off")
    startup_cost: float = Field(0.0, ge=0, description="with commitment: cost of one start")
    schedule: Literal["off", "window"] = Field("off", description="output when no set-points come from outside: off, or full output within run_hours")
    run_hours: tuple[float, float] = Field((17.0, 21.0), description="local hours [start, end) of the 'window' schedule; may wrap midnight")

    @field_validator("cost_per_mwh")
    @classmethod
    def _convex(cls, costs: list[float]) -> list[float]:
        if any(b < a for a, b in zip(costs, costs[1:])):
            raise ValueError(f"segment costs must not decrease (a convex cost curve; got {costs})")
        return costs

    @field_validator("run_hours")
    @classmethod
    def _hours_of_day(cls, window: tuple[float, float]) -> tuple[float, float]:
        return hours_window(window)


class FlexibleLoadSpec(_Strict):
    """Flexible loads: new loads that follow the feeder's load shape (their baseline) and can be
    moved up or down within limits by set-points; what is moved must come back (energy owed
    is tracked), and moving costs `shift_price` per MWh up plus down."""

    penetration: float = Field(0.0, ge=0, le=10, description="total baseline peak as a share of the feeder's peak load")
    count: PositiveInt | None = Field(None, description="number of flexible loads; default: one per chosen load bus, at most 100")
    phases: Literal["load", "single", "three"] = Field("load", description="connect like the load at the bus, single-phase, or three-phase buses only")
    buses: list[str] | None = Field(None, description="explicit buses instead of seeded random load buses")
    up_pu: float = Field(0.5, ge=0, le=10, description="largest increase above the baseline, as a share of the baseline peak")
    down_pu: float = Field(0.5, ge=0, le=1, description="largest decrease below the baseline, as a share of the baseline peak (never below zero)")
    power_factor: float = Field(0.95, gt=0, le=1, description="lagging power factor of the load")
    shift_price: float = Field(5.0, ge=0, description="cost of moving load up or down, per MWh moved")


class ControlsSpec(_Strict):
    """Local controls active in time-series operation."""

    regulators: bool = Field(True, description="voltage regulators tap (off: taps stay where they start)")
    capacitors: bool = Field(False, description="voltage-controlled switching of the feeder's capacitor banks")
    volt_var: bool = Field(False, description="PV Volt-VAR (IEEE 1547 category B curve)")
    volt_watt: bool = Field(False, description="PV Volt-Watt (IEEE 1547 curve)")


class SolverSpec(_Strict):
    """OpenDSS solver settings of one feeder; unset keys keep what the model's own files set
    (OpenDSS's defaults: 15 iterations, the normal algorithm), Tandem's control rounds and
    OpenDSS's adaptive Volt-VAR step."""

    max_iterations: int | None = Field(None, ge=1, le=1000, description="power-flow iterations per solve (OpenDSS `Set MaxIterations`; its default 15 is too few for some large feeders, e.g. IEEE 8500, whose own run script sets 20)")
    max_control_iterations: int | None = Field(None, ge=1, le=10000, description="control rounds per solve: regulators, capacitors, inverter controls (OpenDSS `Set MaxControlIter`; Tandem's default 100, 1000 with Volt-VAR or Volt-Watt on PV: each regulator tap waits until every inverter has settled)")
    algorithm: Literal["normal", "newton"] | None = Field(None, description="OpenDSS `Set Algorithm`: normal (current injection, fast) or newton (more robust on heavily loaded or meshed feeders)")
    volt_var_delta_q: float | None = Field(None, gt=0, le=1, description="Volt-VAR: the share of the way to its curve each PV inverter moves its reactive power per control round (OpenDSS InvControl `DeltaQ_factor`); null: OpenDSS's adaptive step. Inverters on weak secondaries can hunt each other at the adaptive step (IEEE 8500 with 100 % PV) and settle at 0.1, in more rounds")


class DiversitySpec(_Strict):
    """Each load gets its own version of the feeder's load shape."""

    enabled: bool = True
    scale_sigma: float = Field(0.1, ge=0, le=1, description="spread of the per-load scale factors (lognormal sigma)")
    max_shift: NonNegativeDuration = Field(pd.Timedelta("30min"), description="largest time shift of a load's profile, with units (0 for scaling only)")


class FeederSpec(_Strict):
    """One feeder model attached to one transmission bus, with `multiplier` identical copies behind it."""

    name: str | None = Field(None, description="unique name; default '<model>_bus<bus>'")
    model: str = Field(description="bundled feeder name (ieee13, ieee123) or path to an OpenDSS master file")
    bus: int | str = Field(description="transmission bus the feeder attaches to (pandapower bus index or bus name)")
    multiplier: float | Literal["match_bus_load"] = Field(
        "match_bus_load",
        description="number of identical copies behind the bus, or 'match_bus_load' so the copies carry the bus's own load at the start",
    )
    bus_load: Literal["replace", "add"] = Field(
        "replace", description="whether the feeders replace the bus's own load or add to it"
    )
    match_q: bool = Field(
        False,
        description=(
            "with multiplier 'match_bus_load': also match the bus's own reactive power at the start, by a fixed "
            "reactive power at the boundary (a power-factor correction: capacitor or reactor) making up the copies' difference"
        ),
    )
    load_profile: ProfileName | ProfileFile = Field(
        "residential",
        description="built-in load shape, or a file: per unit (pu, %) or power (W, kW, MW: scaled so its peak is 1)",
    )
    load_diversity: DiversitySpec = DiversitySpec()
    pv: PVSpec = PVSpec()
    battery: BatterySpec = BatterySpec()
    ev: EVSpec = EVSpec()
    dg: DGSpec = DGSpec()
    flexible_load: FlexibleLoadSpec = FlexibleLoadSpec()
    controls: ControlsSpec = ControlsSpec()
    solver: SolverSpec = SolverSpec()
    seed: int = Field(0, ge=0, description="seed of DER placement, load diversity, EV sessions and cloud cover")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value in BUNDLED_FEEDERS or value.lower().endswith(".dss"):
            return value
        synthetic = re.fullmatch(r"synthetic:(\d+)", value)
        if synthetic:
            if not 50 <= int(synthetic.group(1)) <= 5000:
                raise ValueError(f"synthetic feeders have 50 to 5000 buses (got {synthetic.group(1)})")
            return value
        raise ValueError(
            f"unknown feeder model {value!r}: give a bundled feeder ({', '.join(BUNDLED_FEEDERS)}), "
            "'synthetic:<buses>' or a path to an OpenDSS .dss master file"
        )

    @model_validator(mode="after")
    def _match_q_needs_matching(self) -> "FeederSpec":
        if self.match_q and self.multiplier != "match_bus_load":
            raise ValueError("match_q: matches the bus's own Q only with multiplier 'match_bus_load'")
        return self

    @field_validator("multiplier")
    @classmethod
    def _positive_multiplier(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"multiplier must be a positive finite number (got {value})")
        return value

    @field_validator("bus", mode="before")
    @classmethod
    def _no_bool_bus(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"bus must be a bus index or name (got {value})")
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError(f"feeder names may hold letters, digits, '_', '.' and '-' only (got {value!r})")
        return value

    @property
    def label(self) -> str:
        return self.name or f"{Path(self.model.replace(':', '')).stem}_bus{self.bus}"


class TimeSpec(_Strict):
    start: datetime = Field(datetime(2024, 7, 1), description="first simulated instant (ISO 8601; a time zone is kept)")
    duration: Duration = Field(pd.Timedelta("2d"), description="simulated span, with units ('2d', '36h')")
    step: Duration = Field(pd.Timedelta("5min"), description="time step, with units ('5min', '60s')")

    @model_validator(mode="after")
    def _whole_steps(self) -> "TimeSpec":
        if self.step > self.duration:
            raise ValueError(f"step {self.step} is longer than duration {self.duration}")
        if self.duration % self.step != pd.Timedelta(0):
            raise ValueError(f"duration {self.duration} is not a whole number of steps of {self.step}")
        return self

    @property
    def n_steps(self) -> int:
        return int(self.duration / self.step)

    @property
    def step_seconds(self) -> float:
        return self.step.total_seconds()

    def index(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.n_steps, freq=self.step)


class SolarSpec(_Strict):
    """Where the sun is and how cloudy it gets (built-in irradiance)."""

    latitude_deg: float = Field(40.0, ge=-90, le=90)
    longitude_deg: float = Field(-105.0, ge=-180, le=180)
    variability: float = Field(0.3, ge=0, le=1, description="cloudiness: 0 clear sky, 1 very variable")
    file: ProfileFile | None = Field(None, description="measured irradiance (W/m2 or kW/m2) instead of the built-in model")


# Schemes run by the coordinator federate (`coordination.schemes`; tso_managed is centralized).
COORDINATED_SCHEMES = ("centralized", "tso_managed", "hybrid", "dso_managed", "dso_first", "admm")
SCHEMES = ("none", "local", *COORDINATED_SCHEMES, "external")
SchemeName = Literal[SCHEMES]


class ResolutionSpec(_Strict):
    """One stretch of a multi-resolution horizon: periods of `period` up to `until` from now."""

    period: Duration = Field(description="length of the look-ahead periods in this stretch (a whole number of intervals)")
    until: Duration = Field(description="where the stretch ends, from the start of the horizon (the last one's: the horizon)")


class CoordinationSpec(_Strict):
    """Who sets the DERs: nobody, their local inverter functions, the coordinator federate's
    look-ahead OPF, or a federate of your own."""

    scheme: SchemeName = Field(
        "none",
        description=(
            "none: DERs follow their own profiles and schedules; local: Volt-VAR and Volt-Watt on every PV; "
            "centralized: the coordinator federate solves the joint T&D look-ahead OPF and sends DER set-points "
            "(and generator dispatch); tso_managed: the same; hybrid, dso_managed, dso_first, admm: the TSO-DSO schemes "
            "of docs/coordination.md in the coordinator federate; external: a HELICS federate of your own (joined with --observers) publishes set-points"
        ),
    )
    interval: Duration = Field(pd.Timedelta("15min"), description="time between coordinator solves (a whole number of steps); also the OPF's period length")
    horizon: Duration = Field(pd.Timedelta("6h"), description="look-ahead of each solve (a whole number of intervals)")
    resolution: list[ResolutionSpec] | None = Field(
        None, description="multi-resolution look-ahead (centralized scheme): stretches of periods, e.g. "
        "[{period: 15min, until: 4h}, {period: 1h, until: 24h}]; the first periods one interval long, the last stretch "
        "ending at the horizon; forecasts are averaged over each period. None: every period one interval"
    )
    forecast: Literal["perfect", "persistence", "noisy"] = Field(
        "perfect", description="how the coordinator foresees loads and PV: the realised profiles, yesterday's (persistence, daily), or realised x (1 + error growing with lead time)"
    )
    forecast_error: float = Field(0.05, ge=0, le=1, description="noisy forecasts: relative standard deviation one interval ahead")
    forecast_error_growth: float = Field(0.5, ge=0, le=2, description="noisy forecasts: error grows as lead ** this (0.5: like a random walk)")
    forecast_seed: NonNegativeInt = Field(0, description="noisy forecasts: random seed")
    voltage_limits: tuple[float, float] = Field((0.95, 1.05), description="feeder voltage band the OPF keeps to (pu; soft, penalised)")
    voltage_margin: float = Field(
        0.0, ge=0, lt=0.1,
        description="pu the OPF's plans keep inside voltage_limits at both ends, for what its linear feeder model misses "
                    "(losses, tap moves between plans); KPIs still count violations against voltage_limits",
    )
    rating_margin: float = Field(
        0.0, ge=0, lt=1,
        description="share of each transmission branch's rating the DC-OPF keeps free, for the reactive power and losses "
                    "its MW flows do not see (0.1: plans load lines to at most 90 %); KPIs still use the full rating",
    )
    regulators: Literal["hold", "fixed_ratio"] = Field(
        "hold", description="how the OPF sees voltage regulators: holding their measured output voltage (they act between plans), or fixed at their measured taps"
    )
    feeder_model: Literal["full", "reduced"] = Field(
        "full", description="feeder networks in the centralized OPF: full LinDist3Flow, or reduced to the DERs' variables with the network through sensitivities (same optimum)"
    )
    dispatch_generators: bool = Field(True, description="send the OPF's generator dispatch to the transmission federate (else generation follows the load level)")
    time_limit_s: float = Field(60.0, gt=0, description="HiGHS time limit per solve; a solve that fails or runs out keeps the last set-points")
    battery_binaries: Literal["relax-and-fix", "relax-and-check", "mip", "relaxed"] = Field(
        "relax-and-fix", description="no simultaneous charge and discharge: fix directions after an LP (fast), check and re-solve as a MIP, always a MIP, or LP only"
    )
    dso_processes: NonNegativeInt | None = Field(
        None, description="worker processes for the DSO problems of hybrid, dso_managed, dso_first and admm "
                          "(0: in the coordinator's process; default: admm one per feeder up to the CPUs, the others 0)",
    )
    curtailment_price: float = Field(5.0, ge=0, description="cost of PV energy available but not used (per MWh)")
    battery_degradation_price: float = Field(10.0, ge=0, description="battery wear per MWh charged plus discharged")

    @model_validator(mode="after")
    def _sensible_window(self) -> "CoordinationSpec":
        lo, hi = self.voltage_limits
        if not 0.5 < lo < hi < 1.5:
            raise ValueError(f"voltage_limits: need 0.5 < low < high < 1.5 pu (got {lo}, {hi})")
        if lo + self.voltage_margin >= hi - self.voltage_margin:
            raise ValueError(f"voltage_margin: {self.voltage_margin} pu at both ends leaves no band inside voltage_limits ({lo}, {hi})")
        if self.horizon < self.interval or self.horizon % self.interval != pd.Timedelta(0):
            raise ValueError(f"horizon {self.horizon} is not a whole number of intervals of {self.interval}")
        if self.resolution is not None:
            self._check_resolution()
        return self

    def _check_resolution(self) -> None:
        stretches, _t = self.resolution, duration_text
        if not stretches:
            raise ValueError("resolution: give at least one stretch (or leave it out for one interval per period)")
        if self.scheme in COORDINATED_SCHEMES and self.scheme not in ("centralized", "tso_managed"):
            raise ValueError(f"resolution: multi-resolution horizons are for the centralized scheme (got {self.scheme})")
        start = pd.Timedelta(0)
        for i, s in enumerate(stretches):
            name = f"resolution[{i}]"
            if s.period <= pd.Timedelta(0) or s.period % self.interval != pd.Timedelta(0):
                raise ValueError(f"{name}.period: {_t(s.period)} is not a whole number of intervals of {_t(self.interval)}")
            if i == 0 and s.period != self.interval:
                raise ValueError(f"{name}.period: the first periods must be one interval ({_t(self.interval)}) long: "
                                 "a plan's first period is what runs until the next plan")
            if s.until - start < s.period:
                raise ValueError(f"{name}.until: {_t(s.until)} leaves less than one period of {_t(s.period)} after {_t(start)}")
            if (s.until - start) % s.period != pd.Timedelta(0):
                raise ValueError(f"{name}.period: {_t(s.period)} does not divide the {_t(s.until - start)} from {_t(start)} to {_t(s.until)}")
            start = s.until
        if start != self.horizon:
            raise ValueError(f"resolution[{len(stretches) - 1}].until: {_t(start)} is not the horizon ({_t(self.horizon)})")

    @property
    def coordinated(self) -> bool:
        """Whether the coordinator federate runs."""
        return self.scheme in COORDINATED_SCHEMES

    @property
    def periods(self) -> int:
        return len(self.period_intervals)

    @property
    def period_intervals(self) -> list[int]:
        """Each look-ahead period's length in intervals."""
        if self.resolution is None:
            return [1] * int(self.horizon / self.interval)
        out, start = [], pd.Timedelta(0)
        for s in self.resolution:
            out += [int(s.period / self.interval)] * int((s.until - start) / s.period)
            start = s.until
        return out


class CouplingSpec(_Strict):
    mode: Literal["loose", "iterative"] = Field(
        "loose", description="loose: one exchange per step (one-step lag); iterative: HELICS iterations until converged"
    )
    tolerance_pu: float = Field(1e-6, gt=0, lt=0.1, description="boundary voltage change (pu) below which iterations stop")
    max_iterations: int = Field(20, ge=2, le=1000, description="iteration cap per step (at least 2); steps that hit it are recorded as not converged")


class FederationSpec(_Strict):
    core_type: Literal["zmq", "zmq_ss", "tcp", "tcp_ss"] = Field("zmq", description="HELICS core type")
    broker_address: str = Field("127.0.0.1", description="address federates connect to the broker at")
    broker_interface: str | None = Field(
        None, description="address the broker listens on (0.0.0.0: every interface); default: broker_address"
    )
    local_interface: str | None = Field(
        None, description="address each federate listens on for the broker; default: HELICS picks one that reaches broker_address"
    )
    broker_port: Annotated[int, Field(ge=1024, le=65534)] | Literal["auto"] = Field("auto", description="broker port; 'auto' picks a free one")
    feeder_processes: PositiveInt | Literal["auto"] = Field(
        "auto", description="number of feeder federate processes; 'auto' uses the cores left after the transmission federate and recorder (always one in iterative coupling)"
    )
    # Below a second HELICS gives up on peers that are merely busy (a feeder compiling its model).
    timeout_s: float = Field(60.0, ge=1, le=86400, description="how long a federate or the broker waits for a silent peer before failing (1 s to 1 day)")


class OutputSpec(_Strict):
    path: str | None = Field(None, description="HDF5 file to write; default runs/output/<name>_<timestamp>.h5")
    node_voltages: bool = Field(
        True, description="record every feeder node's voltage each step (float32); off for very large studies"
    )
    checkpoint_every: Duration | None = Field(
        None, description="save the state needed to continue the run this often (a whole number of steps), for `tandem run --resume`"
    )


class Scenario(_Strict):
    """A whole study: network, feeders, time, coupling, federation and output."""

    name: str = Field("scenario", min_length=1, max_length=100, description="names the default output file runs/output/<name>_<time>.h5")
    description: str = ""
    transmission: TransmissionSpec = TransmissionSpec()
    feeders: list[FeederSpec] = Field(min_length=1)
    time: TimeSpec = TimeSpec()
    solar: SolarSpec = SolarSpec()
    coordination: CoordinationSpec = CoordinationSpec()
    coupling: CouplingSpec = CouplingSpec()
    federation: FederationSpec = FederationSpec()
    output: OutputSpec = OutputSpec()

    @field_validator("name")
    @classmethod
    def _file_name(cls, value: str) -> str:
        # The name becomes a file name in runs/output/: a path in it would write elsewhere.
        if re.search(r"[/\\\x00-\x1f]", value) or value.startswith("."):
            raise ValueError(f"the name becomes a file name: no '/', '\\', control characters or leading '.' (got {value!r})")
        return value

    @model_validator(mode="after")
    def _unique_feeder_names(self) -> "Scenario":
        seen: dict[str, int] = {}
        for i, feeder in enumerate(self.feeders):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", feeder.label):
                raise ValueError(
                    f"feeders.{i}: the default name {feeder.label!r} holds characters a feeder name may not; give a name"
                )
            if feeder.label in seen:
                raise ValueError(f"feeders.{i}: name {feeder.label!r} is already used by feeders.{seen[feeder.label]}")
            seen[feeder.label] = i
        if self.coupling.mode == "iterative" and self.federation.feeder_processes not in ("auto", 1):
            # HELICS 3.6 keeps iterations in step only between two iterating federates: with
            # several feeder federates one may be granted the next step while another still iterates.
            raise ValueError(
                "federation.feeder_processes: iterative coupling runs all feeders in one feeder federate "
                f"(several OpenDSS contexts); set 1 or auto (got {self.federation.feeder_processes})"
            )
        every = self.output.checkpoint_every
        if every is not None and every % self.time.step != pd.Timedelta(0):
            raise ValueError(f"output.checkpoint_every: {every} is not a whole number of steps of {self.time.step}")
        if self.coordination.coordinated and self.coordination.interval % self.time.step != pd.Timedelta(0):
            raise ValueError(
                f"coordination.interval: {self.coordination.interval} is not a whole number of steps of {self.time.step}"
            )
        return self

    @property
    def checkpoint_interval_steps(self) -> int | None:
        """Steps between checkpoints (None: no checkpoints)."""
        every = self.output.checkpoint_every
        return None if every is None else int(every / self.time.step)

    def is_checkpoint_step(self, k: int) -> bool:
        """Whether the state after step k is saved: every `checkpoint_every`, never after the last step."""
        n = self.checkpoint_interval_steps
        return n is not None and (k + 1) % n == 0 and k < self.time.n_steps - 1

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def _read_mapping(path: Path) -> dict:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.__class__.__name__})") from None
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ScenarioError(f"{path}: scenario files must end in .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ScenarioError(f"{path}: not valid {suffix[1:].upper()}: {first_line}") from None
    except RecursionError:  # the parsers recurse once per level of nesting
        raise ScenarioError(f"{path}: nested too deeply to be a scenario") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: the top level must be a mapping of keys (name, transmission, feeders, ...)")
    return data


def describe_validation_error(source: str, exc: ValidationError) -> str:
    """One line naming each offending key, e.g. `x.yaml: time.step: ...`. For a key that takes
    one of two forms (a profile name or a file), the form the value was not meant as is left out."""
    errors = exc.errors()
    if len(errors) > 1:
        wrong_form = lambda e: e["type"] in ("model_type", "dict_type") or e["msg"] == "Value error, a built-in profile is named by a string"  # noqa: E731
        errors = [e for e in errors if not wrong_form(e)] or errors
    parts = []
    for err in errors:
        # pydantic names union branches in the location ('ProfileFile', 'function-before[...]'): not keys
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p[:1].isupper())))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(dict.fromkeys(parts))


def _resolve_paths(data: dict, base: Path) -> dict:
    """Make the network and feeder files named in a scenario relative to its folder; the output path,
    like any command-line path, is relative to the working directory."""
    transmission = data.get("transmission")
    if isinstance(transmission, dict) and isinstance(transmission.get("network"), str):
        net = transmission["network"]
        if Path(net).suffix and not net.startswith(SIMBENCH_PREFIX):  # '1-HVMV-mixed-1.105-0-sw' is no file
            transmission["network"] = str((base / net).resolve())
    for feeder in data.get("feeders") or []:
        if isinstance(feeder, dict) and isinstance(feeder.get("model"), str) and feeder["model"].lower().endswith(".dss"):
            feeder["model"] = str((base / feeder["model"]).resolve())
        if isinstance(feeder, dict) and isinstance(feeder.get("load_profile"), dict) and isinstance(feeder["load_profile"].get("file"), str):
            feeder["load_profile"]["file"] = str((base / feeder["load_profile"]["file"]).resolve())
    solar = data.get("solar")
    if isinstance(solar, dict) and isinstance(solar.get("file"), dict) and isinstance(solar["file"].get("file"), str):
        solar["file"]["file"] = str((base / solar["file"]["file"]).resolve())
    output = data.get("output")
    if isinstance(output, dict) and isinstance(output.get("path"), str):
        output["path"] = str((Path.cwd() / output["path"]).resolve())
    return data


def check_files(scenario: Scenario) -> None:
    """Every file the scenario names must exist before any process starts."""
    network = scenario.transmission.network
    if Path(network).suffix and not network.startswith(SIMBENCH_PREFIX) and not Path(network).is_file():
        raise ScenarioError(f"transmission.network: file not found: {network}")
    for i, feeder in enumerate(scenario.feeders):
        if feeder.model.lower().endswith(".dss") and not Path(feeder.model).is_file():
            raise ScenarioError(f"feeders.{i}.model: OpenDSS master file not found: {feeder.model}")
    from timeseries import sources  # pandas readers: only when a scenario names a file

    try:
        for feeder in scenario.feeders:
            if isinstance(feeder.load_profile, ProfileFile):
                sources.profile_values(feeder.load_profile, scenario.time.index(), "pu")
        if scenario.solar.file is not None:
            sources.profile_values(scenario.solar.file, scenario.time.index(), "W/m2")
    except sources.ProfileError as exc:
        raise ScenarioError(str(exc)) from None


def _apply_overrides(data: dict, overrides: dict[str, object], source: str) -> dict:
    """Set dotted keys (`coupling.mode`) as if they were written in the file."""
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ScenarioError(f"{source}: {key}: expected a mapping to override {dotted}")
            node = child
        node[leaf] = value
    return data


def load_scenario(path: str | Path | None = None, overrides: dict[str, object] | None = None) -> Scenario:
    """Read and validate a scenario file; `None` gives the built-in default study."""
    source = Path(path) if path is not None else DEFAULT_SCENARIO
    if not source.is_file():
        raise ScenarioError(f"scenario file not found: {source}")
    data = _resolve_paths(_read_mapping(source), source.resolve().parent)
    data = _apply_overrides(data, overrides or {}, str(source))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(describe_validation_error(str(path or "built-in default scenario"), exc)) from None
    except RecursionError:  # a value nested deeper than the parser's limit but past pydantic's
        raise ScenarioError(f"{source}: nested too deeply to be a scenario") from None
    check_files(scenario)
    return scenario
