"""The scenario: what a study is (networks, feeders, DERs, time, coupling, coordination,
output), validated with pydantic before anything starts. Everything above reads it."""
