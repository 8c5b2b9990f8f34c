"""The ground floor: what every layer may use and that knows nothing of servers or of the
inventory. Input errors and the checks of user-supplied values (`validation`), the operator's
messages (`output`), Ctrl-C and SIGTERM noted and acted on at safe points (`interrupts`), and
where a run's seconds go (`timings`). Imports: the standard library only.
"""
