"""The whole fleet: the rollout (batches, one watch window, rollback), delivery of the image to
every server, the fleet's certificate, the dry run. Imports: every layer below it (`core`,
`config`, `commands`, `remote`, `https`, `server`).
"""
