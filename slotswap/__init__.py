"""slotswap: zero-downtime blue/green deploys of a containerised web app to your own servers.

The package is in layers, each a folder that imports only the ones below it:
core < config < commands < remote < https < server < fleet < cli (see each folder's
`__init__`). `slotswap.tasks` is the tasks' public name, for a project's own fabfile.
"""
