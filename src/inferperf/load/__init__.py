"""Load generation: scenarios, open/closed loops, systems under test, probes, network shaping."""
