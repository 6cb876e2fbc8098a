"""``driftline demo``: the whole loop on one machine, with real parts and real traffic."""
