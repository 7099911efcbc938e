"""Errors raised by the power-flow models; messages are one line naming the culprit."""


class PowerFlowError(RuntimeError):
    """A power flow that did not converge; the message names the model and the step."""


class FeederModelError(RuntimeError):
    """A feeder model that cannot be loaded; the message names the feeder and file."""
