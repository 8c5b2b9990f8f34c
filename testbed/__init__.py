"""The local test bed: a sandbox fleet of servers on one Linux machine, the demo, and
the load generator. For this repository's tests, demo and benchmarks; not installed."""
