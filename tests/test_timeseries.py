"""Profiles from files, resampling, built-in PV and wind, load diversity and forecasts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from timeseries import forecasts
from timeseries.diversity import diversified_profiles
from timeseries.profiles import load_shape
from timeseries.solar import clear_sky_irradiance, cloudy_irradiance, pv_power_pu
from timeseries.sources import ProfileError, read_profile, resample_to
from timeseries.wind import CUT_IN_M_S, power_curve_pu, wind_power_pu, wind_speed


def write_csv(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n")
    return path


# --- reading files ----------------------------------------------------------------------


def test_csv_round_trip_with_timestamp_column(tmp_path):
    index = pd.date_range("2024-07-01", periods=96, freq="15min")
    values = np.linspace(10.0, 20.0, 96)
    frame = pd.DataFrame({"timestamp": index.strftime("%Y-%m-%dT%H:%M:%S"), "load [kW]": values, "q [kvar]": values / 3})
    frame.to_csv(tmp_path / "load.csv", index=False)

    series = read_profile(tmp_path / "load.csv", "load")  # the base name finds 'load [kW]'
    assert series.index.equals(index.rename("timestamp"))
    np.testing.assert_allclose(series.to_numpy(), values)
    assert series.name == "load" and series.attrs["units"] == "kW"

    q = read_profile(tmp_path / "load.csv", "q [kvar]", expected_units="Mvar")
    np.testing.assert_allclose(q.to_numpy(), values / 3 / 1000)


def test_parquet_round_trip(tmp_path):
    index = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    values = np.arange(48.0) * 1000.0
    pd.DataFrame({"timestamp": index, "pv [W]": values}).to_parquet(tmp_path / "pv.parquet")
    series = read_profile(tmp_path / "pv.parquet", expected_units="kW")
    assert series.index.equals(index.rename("timestamp"))
    np.testing.assert_allclose(series.to_numpy(), np.arange(48.0))

    # A DatetimeIndex written by pandas counts as the timestamp column.
    pd.DataFrame({"load": values}, index=index.rename("timestamp")).to_parquet(tmp_path / "indexed.parquet")
    np.testing.assert_allclose(read_profile(tmp_path / "indexed.parquet").to_numpy(), values)


def test_start_and_resolution_for_bare_values(tmp_path):
    path = write_csv(tmp_path / "bare.csv", ["0.5", "0.6", "0.7", "0.8"])
    series = read_profile(path, start="2024-03-01 00:00", resolution="15min", tz="Europe/Berlin", expected_length=4)
    assert list(series.index) == list(pd.date_range("2024-03-01", periods=4, freq="15min", tz="Europe/Berlin"))
    np.testing.assert_allclose(series.to_numpy(), [0.5, 0.6, 0.7, 0.8])

    headed = write_csv(tmp_path / "headed.csv", ["level [%]", "50", "75"])
    series = read_profile(headed, start="2024-03-01", resolution="1h", expected_units="pu")
    np.testing.assert_allclose(series.to_numpy(), [0.5, 0.75])


def test_unit_conversion_w_to_kw(tmp_path):
    path = write_csv(tmp_path / "w.csv", ["timestamp,p [W]", "2024-01-01T00:00,1500", "2024-01-01T01:00,2500"])
    np.testing.assert_allclose(read_profile(path, expected_units="kW").to_numpy(), [1.5, 2.5])
    bare = write_csv(tmp_path / "w2.csv", ["timestamp,p", "2024-01-01T00:00,1500", "2024-01-01T01:00,2500"])
    np.testing.assert_allclose(read_profile(bare, units="W", expected_units="MW").to_numpy(), [0.0015, 0.0025])


def test_time_zones_naive_localised_and_aware_across_dst(tmp_path):
    naive = write_csv(tmp_path / "naive.csv", ["timestamp,x", "2024-07-01T12:00,1", "2024-07-01T13:00,2"])
    series = read_profile(naive, tz="Europe/Berlin")
    assert series.index[0] == pd.Timestamp("2024-07-01 10:00", tz="UTC")

    # Offsets change at the spring DST switch (02:00 CET -> 03:00 CEST): still hourly in absolute time.
    aware = write_csv(tmp_path / "aware.csv", [
        "timestamp,x", "2024-03-31T00:00:00+01:00,1", "2024-03-31T01:00:00+01:00,2",
        "2024-03-31T03:00:00+02:00,3", "2024-03-31T04:00:00+02:00,4",
    ])
    series = read_profile(aware, tz="Europe/Berlin")
    assert (np.diff(series.index.asi8) == 3600 * 10**9).all()

    # Naive wall-clock times repeat 02:00 at the autumn switch: tz= places them in order.
    autumn = write_csv(tmp_path / "autumn.csv", ["timestamp,x"] + [f"2024-10-27T{h:02d}:00,{h}" for h in (0, 1, 2, 2, 3)])
    assert read_profile(autumn, tz="Europe/Berlin").index.tz_convert("UTC")[-1] == pd.Timestamp("2024-10-27 02:00", tz="UTC")
    with pytest.raises(ProfileError, match="autumn.csv: timestamp 2024-10-27 02:00:00 is duplicated; .* give tz="):
        read_profile(autumn)
    spring = write_csv(tmp_path / "spring.csv", ["timestamp,x", "2024-03-31T01:00,1", "2024-03-31T02:00,2"])
    with pytest.raises(ProfileError, match="spring.csv: cannot place timestamp 2024-03-31 02:00:00 in Europe/Berlin"):
        read_profile(spring, tz="Europe/Berlin")


def test_berlin_profile_resampled_onto_utc_index_lands_on_the_right_hours(tmp_path):
    local = pd.date_range("2024-07-01", periods=48, freq="1h", tz="Europe/Berlin")
    stamps = [t.isoformat() for t in local]  # '+02:00' offsets
    lines = ["timestamp,hour"] + [f"{s},{t.hour}" for s, t in zip(stamps, local)]
    series = read_profile(write_csv(tmp_path / "berlin.csv", lines))
    utc = pd.date_range("2024-07-01 00:00", periods=12, freq="1h", tz="UTC")
    # 00:00 UTC is 02:00 in Berlin (CEST, UTC+2).
    np.testing.assert_allclose(resample_to(series, utc), (np.arange(12) + 2) % 24)


# --- every error names the file and the culprit --------------------------------------------

GOOD_HEAD = ["timestamp,load [kW],pv [kW]", "2024-01-01T00:00,1,0", "2024-01-01T00:15,2,0"]


@pytest.mark.parametrize("lines, kwargs, culprit", [
    (GOOD_HEAD, {"column": "wind"}, r"no column 'wind'; available: load \[kW\], pv \[kW\]"),
    (GOOD_HEAD, {}, r"2 data columns .*choose one"),
    (["timestamp,x"], {}, "no data rows"),
    (["timestamp,x", "2024-01-01T00:00,1", "2024-01-01T00:15,abc"], {}, "non-numeric value 'abc' at line 3"),
    (["timestamp,x", "2024-01-01T00:00,1", "2024-01-01T00:15,", "2024-01-01T00:30,2"], {}, "missing value at line 3"),
    (["timestamp,x", "2024-01-01T00:00,1", "2024-01-01T00:15,2", "2024-01-01T01:00,3"], {},
     "gap after 2024-01-01 00:15:00.*first missing 2024-01-01 00:30:00"),
    (["timestamp,x", "2024-01-01T00:00,1", "2024-01-01T00:15,2", "2024-01-01T00:15,3"], {}, "2024-01-01 00:15:00 is duplicated"),
    (["timestamp,x", "2024-01-01T00:00,1", "2024-01-01T00:30,2", "2024-01-01T00:15,3"], {}, "2024-01-01 00:15:00 is out of order"),
    (["timestamp,x", "2024-01-01T00:00,1", "2024-01-01T00:15,2", "2024-01-01T00:30,3", "2024-01-01T00:37,4"], {},
     "irregular spacing at 2024-01-01 00:37:00"),
    (["timestamp,x", "2024-01-01T00:00,1", "yesterday,2"], {}, "cannot read timestamp 'yesterday' at line 3"),
    (["timestamp,x", "2024-01-01T00:00+01:00,1", "2024-01-01T00:15,2"], {}, "'2024-01-01T00:15' at line 3 mixes naive"),
    (["x", "1", "2", "3"], {"start": "2024-01-01", "resolution": "1h", "expected_length": 24}, "column 'x': 3 values, expected 24"),
    (["x", "1", "2"], {}, "no 'timestamp' column"),
    (["timestamp,p [kW]", "2024-01-01T00:00,1"], {"expected_units": "W/m2"}, r"column 'p \[kW\]' is in kW \(active power\) but W/m2"),
    (["timestamp,p [furlongs]", "2024-01-01T00:00,1"], {}, "unknown unit 'furlongs'"),
])
def test_profile_errors_name_file_and_culprit(tmp_path, lines, kwargs, culprit):
    path = write_csv(tmp_path / "bad.csv", lines)
    with pytest.raises(ProfileError, match=culprit) as err:
        read_profile(path, **kwargs)
    message = str(err.value)
    assert str(path) in message and "\n" not in message


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ProfileError, match=f"profile file not found: {tmp_path / 'nope.csv'}"):
        read_profile(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ProfileError, match=f"{tmp_path / 'empty.csv'}: file is empty"):
        read_profile(tmp_path / "empty.csv")


def test_parquet_errors_name_rows(tmp_path):
    index = pd.date_range("2024-01-01", periods=4, freq="1h")
    pd.DataFrame({"timestamp": index, "x": [1.0, np.nan, 2.0, 3.0]}).to_parquet(tmp_path / "nan.parquet")
    with pytest.raises(ProfileError, match=r"nan\.parquet: column 'x': missing value at row 2"):
        read_profile(tmp_path / "nan.parquet")


# --- resampling ------------------------------------------------------------------------------


def hourly(values, start="2024-01-01", tz=None) -> pd.Series:
    return pd.Series(np.asarray(values, float), index=pd.date_range(start, periods=len(values), freq="1h", tz=tz))


def test_upsampling_interpolation_is_exact_on_a_linear_series():
    series = hourly(3.0 * np.arange(25) + 1.0)
    index = pd.date_range("2024-01-01", "2024-01-02", freq="5min")
    minutes = np.arange(len(index)) * 5.0
    np.testing.assert_allclose(resample_to(series, index), 1.0 + 3.0 * minutes / 60.0)
    np.testing.assert_allclose(resample_to(series, index, "ffill"), 1.0 + 3.0 * (minutes // 60))


def test_downsampling_mean_preserves_energy():
    rng = np.random.default_rng(1)
    minute = pd.Series(rng.random(1440), index=pd.date_range("2024-01-01", periods=1440, freq="1min"))
    index = pd.date_range("2024-01-01", periods=96, freq="15min")
    means = resample_to(minute, index, "mean")
    np.testing.assert_allclose(means, minute.to_numpy().reshape(96, 15).mean(axis=1))
    assert means.sum() * 15 == pytest.approx(minute.sum())


def test_resample_refuses_extrapolation_and_mixed_awareness():
    series = hourly(np.arange(24.0))  # 00:00 .. 23:00
    late = pd.date_range("2024-01-01 22:00", periods=4, freq="30min")
    with pytest.raises(ProfileError, match="needs 2024-01-01 23:30:00"):
        resample_to(series, late)
    with pytest.raises(ProfileError, match="needs 2023-12-31 23:55:00"):
        resample_to(series, pd.date_range("2023-12-31 23:55", periods=3, freq="5min"))
    with pytest.raises(ProfileError, match="naive timestamps and the index is time-zone aware"):
        resample_to(series, pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC"))
    # The mean over the last hour needs the series to cover 23:00-24:00: its last sample does.
    assert resample_to(series, pd.date_range("2024-01-01 22:00", periods=2, freq="1h"), "mean").tolist() == [22.0, 23.0]


# --- PV ---------------------------------------------------------------------------------------


def test_clear_sky_zero_at_night_and_peak_at_solar_noon():
    # Longitude 0, naive = UTC, 3 November: the equation of time is +16.4 min (almanac),
    # so the sun culminates at 11:43.6 UTC.
    day = pd.date_range("2024-11-03", periods=1440, freq="1min")
    ghi = clear_sky_irradiance(day, 45.0, 0.0)
    noon = day[int(np.argmax(ghi))]
    assert abs((noon - pd.Timestamp("2024-11-03 11:43:36")).total_seconds()) <= 120
    assert ghi[day.hour < 5].max() == 0.0 and ghi[day.hour >= 19].max() == 0.0

    # Longitude 15 E in Berlin winter time (UTC+1): mean solar noon 12:00 local; on
    # 25 December the equation of time is ~0, so the peak is within minutes of 12:00.
    day = pd.date_range("2024-12-25", periods=1440, freq="1min", tz="Europe/Berlin")
    noon = day[int(np.argmax(clear_sky_irradiance(day, 52.5, 15.0)))]
    assert abs((noon - pd.Timestamp("2024-12-25 12:00", tz="Europe/Berlin")).total_seconds()) <= 20 * 60


def test_clear_sky_peak_at_summer_solstice_mid_latitude():
    day = pd.date_range("2024-06-21", periods=1440, freq="1min", tz="UTC")
    peak = clear_sky_irradiance(day, 45.0, 0.0).max()
    assert 850 <= peak <= 1050  # zenith 21.6 deg: Haurwitz gives ~960 W/m2


def test_cloudy_irradiance_bounded_seeded_and_below_clear_sky():
    index = pd.date_range("2024-06-01", periods=14 * 96, freq="15min", tz="Europe/Berlin")
    clear = clear_sky_irradiance(index, 52.5, 13.4)
    cloudy = cloudy_irradiance(index, 52.5, 13.4, seed=3)
    np.testing.assert_array_equal(cloudy, cloudy_irradiance(index, 52.5, 13.4, seed=3))
    assert not np.array_equal(cloudy, cloudy_irradiance(index, 52.5, 13.4, seed=4))
    assert (cloudy >= 0).all() and (cloudy <= 1.1 * clear + 1e-9).all()
    assert cloudy[clear == 0].max() == 0.0
    assert cloudy.sum() < 0.95 * clear.sum()
    # Statistics do not depend on the step: the 1-minute and hourly energies agree.
    minute = pd.date_range("2024-06-01", periods=14 * 1440, freq="1min", tz="Europe/Berlin")
    hourly_index = pd.date_range("2024-06-01", periods=14 * 24, freq="1h", tz="Europe/Berlin")
    e_minute = cloudy_irradiance(minute, 52.5, 13.4, seed=3).sum() / 60
    e_hour = cloudy_irradiance(hourly_index, 52.5, 13.4, seed=3).sum()
    assert e_hour == pytest.approx(e_minute, rel=0.03)
    # No variability: clear days only.
    assert cloudy_irradiance(index, 52.5, 13.4, variability=0.0).sum() > 0.97 * clear.sum()


def test_pv_power_per_unit():
    np.testing.assert_allclose(pv_power_pu(np.array([-5.0, 0.0, 500.0, 1000.0])), [0.0, 0.0, 0.5, 1.0])
    # 1000 W/m2 at 25 C ambient: cell at 56.25 C, -0.4 %/K -> 0.875.
    assert pv_power_pu(np.array([1000.0]), ambient_temp_c=25.0)[0] == pytest.approx(0.875)


# --- wind -------------------------------------------------------------------------------------


def test_wind_power_within_bounds_and_zero_below_cut_in():
    index = pd.date_range("2024-01-01", periods=30 * 96, freq="15min", tz="UTC")
    power = wind_power_pu(index, seed=7)
    assert power.min() >= 0.0 and power.max() <= 1.0
    assert 0.15 < power.mean() < 0.5 and power.std() > 0.1
    np.testing.assert_array_equal(power, wind_power_pu(index, seed=7))
    assert wind_speed(index, seed=7).mean() == pytest.approx(7.5, rel=0.25)
    np.testing.assert_array_equal(power_curve_pu(np.array([0.0, 2.9, CUT_IN_M_S - 1e-9, 25.0, 30.0])), 0.0)
    np.testing.assert_allclose(power_curve_pu(np.array([12.0, 20.0])), 1.0)
    assert (wind_power_pu(index, mean_speed=0.5) == 0.0).all()  # calm site: never above cut-in


# --- diversity --------------------------------------------------------------------------------


def test_diversified_profiles():
    index = pd.date_range("2024-07-01", periods=2 * 288, freq="5min")
    base = load_shape("residential", index)
    loads = diversified_profiles(base, index, 2000, seed=5)
    assert loads.shape == (2000, len(index))
    np.testing.assert_array_equal(loads, diversified_profiles(base, index, 2000, seed=5))
    assert not np.allclose(loads[0], loads[1])
    np.testing.assert_allclose(loads.mean(axis=0), base, rtol=0.03)
    # Loads peak at different times.
    assert len(set(np.argmax(loads[:50], axis=1))) > 10
    np.testing.assert_allclose(diversified_profiles(base, index, 3, scale_sigma=0.0, max_shift="0min"), np.tile(base, (3, 1)))
    # A periodic shift alone keeps every load's energy.
    shifted = diversified_profiles(base, index, 20, scale_sigma=0.0, max_shift="2h")
    np.testing.assert_allclose(shifted.mean(axis=1), base.mean())


# --- forecasts --------------------------------------------------------------------------------


def test_perfect_and_persistence_forecasts():
    actual = np.arange(10.0)
    np.testing.assert_array_equal(forecasts.perfect(actual, 2, 3), [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(forecasts.perfect(actual, 8, 3), [9.0, 9.0, 9.0])  # past the end: last value
    np.testing.assert_array_equal(forecasts.persistence(actual, 4, 3), [4.0, 4.0, 4.0])
    # Period 3: step t+h from t+h-3 (h <= 3), t+h-6 (h <= 6), ...
    np.testing.assert_array_equal(forecasts.persistence(actual, 6, 5, period_steps=3), [4.0, 5.0, 6.0, 4.0, 5.0])
    # Period 4 at t=1: steps 2 and 3 have no period-ago value (last value), step 4 takes step 0.
    np.testing.assert_array_equal(forecasts.persistence(actual, 1, 3, period_steps=4), [1.0, 1.0, 0.0])
    two = np.vstack([actual, 2 * actual])
    np.testing.assert_array_equal(forecasts.perfect(two, 2, 2), [[3.0, 4.0], [6.0, 8.0]])


def test_noisy_forecast_error_grows_with_lead_time_and_is_reproducible():
    actual = np.full(100, 10.0)
    draws = np.array([forecasts.noisy(actual, 5, 16, seed=s) for s in range(800)])
    relative_error = draws / 10.0 - 1.0
    std = relative_error.std(axis=0)
    assert std[0] == pytest.approx(0.02, rel=0.15)
    assert std[15] == pytest.approx(0.02 * 4, rel=0.15)  # sigma_h = e1 * sqrt(h)
    assert std[15] > 2 * std[0]
    np.testing.assert_array_equal(forecasts.noisy(actual, 5, 16, seed=3), forecasts.noisy(actual, 5, 16, seed=3))
    assert not np.array_equal(forecasts.noisy(actual, 5, 16, seed=3), forecasts.noisy(actual, 6, 16, seed=3))
    # Clipped at 0 for a non-negative series even with large errors.
    assert forecasts.noisy(np.full(50, 1.0), 0, 40, error_at_1_step=1.0).min() >= 0.0
