"""Tools beside the runtime: the demo, benchmarks, local pools of real daemons, the
in-process pool the services' tests use, and sample trees."""
