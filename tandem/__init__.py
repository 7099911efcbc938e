"""Tandem: transmission-and-distribution co-simulation for time-series studies."""

__version__ = "0.1.0"
