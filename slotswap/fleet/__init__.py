"""The whole fleet: the runner every task reaches its servers through (each in turn or all at
once), the fleet lock, the rollout (batches, one watch window, rollback) and one server's
swap in it, outcomes and exit codes, status, delivery of the image to every server, the
fleet's certificate, the dry run. Imports: every layer below it (`core`, `config`,
`commands`, `remote`, `https`, `server`).
"""
