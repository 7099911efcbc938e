"""HELICS federates of a Tandem run and the launcher that starts them.

Each federate is a small class with `setup`, `step`-wise `run` and `finish`, started
as its own process (`python -m federates.<name> --config federation.json`).
"""
