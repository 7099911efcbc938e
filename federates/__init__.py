"""HELICS federates of a Tandem run and the launcher that starts them.

Each federate is a small class with `setup`, `step`-wise `run` and `finish`, started
as its own process (`python -m federates.<name> --config federation.json`).
"""

# pyarrow must be loaded before helics: with helics loaded first, reading a Parquet file with
# time-zone-aware timestamps crashes the process (SIGSEGV inside pyarrow). Every process that
# uses HELICS here imports this package first.
import pyarrow  # noqa: E402,F401
