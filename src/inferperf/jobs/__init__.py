"""Jobs: collection and (later) YAML job specs, scheduler and executors."""
