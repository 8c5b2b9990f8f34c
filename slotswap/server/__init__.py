"""One server: its lock and history, HAProxy set up and upgraded, the blue/green swap of the
two slots, images, the release command, exec, logs, maintenance and pruning. Each function
works on the server it is given and knows nothing of the rest of the fleet. Imports: `core`,
`config`, `commands`, `remote`, `https`.
"""
