"""The inventory (hosts.yaml) and what follows from it alone: the settings model, its parsing
and validation, the JSON Schema, the app's environment, every path and name on a server
(`layout`), the starter files. Nothing here contacts a server. Imports: `core`.
"""
