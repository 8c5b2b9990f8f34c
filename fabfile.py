"""slotswap: zero-downtime blue/green deploys of a containerised web app, over SSH.

Run `fab --list` for the tasks and `fab --help TASK` for their flags.
"""

from tasks.cli import collection

ns = collection()
