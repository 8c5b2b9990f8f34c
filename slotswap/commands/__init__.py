"""Pure builders and parsers: Docker command lines, HAProxy runtime-API lines and the shell
lines the transport itself runs (file writes, the login's ids), built from settings, and the
answers read into values (a container's state, why an admin socket cannot be reached).
Nothing here runs anything. Imports: `core`, `config`.
"""
