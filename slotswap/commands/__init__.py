"""Pure builders and parsers: Docker command lines and HAProxy runtime-API lines, built from
settings, and the answers of both read into values. Nothing here runs anything. Imports:
`core`, `config`.
"""
