"""``driftline``: the console script, one module per command group."""
