"""driftline monitor: drift engine, profiles, windows and the batch CLI."""

__version__ = "0.1.0"
