"""Power-flow models without any HELICS: the pandapower transmission network and
the OpenDSS feeders. Federates wrap these; the sequential reference loop uses them
directly."""
