"""slotswap: zero-downtime blue/green deploys of a containerised web app, over SSH.

Run `fab --list` for the tasks and `fab --help TASK` for their flags. In this repository the
list has the local sandbox's tasks too (sandbox.create, sandbox.destroy); the installed
`slotswap` command has only the deploy tasks.
"""

from slotswap.tasks import collection
from testbed import tasks as sandbox_tasks

ns = collection()
ns.add_collection(sandbox_tasks.collection())
