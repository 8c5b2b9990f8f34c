"""What the operator types and reads: the Fabric/Invoke tasks and the `slotswap` program, their
flags, `check`, `build`, hooks, live progress, the summary and the `--json` report. Imports:
every layer below it.
"""
