"""What the operator types and reads: the Fabric/Invoke tasks and the `slotswap` program, their
flags, `check`, hooks, live progress and the `--json` report. Imports: every layer below it.
"""
