"""The one place that runs commands on a server: the SSH connection per server, its policy
(timeouts, keepalive, host keys), and the channel to HAProxy's admin socket. Imports: `core`,
`config`, `commands`.
"""
