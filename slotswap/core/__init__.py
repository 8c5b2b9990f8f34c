"""The ground floor: what every layer may use and that knows nothing of servers or of the
inventory. Input errors and the checks of user-supplied values (`validation`), the operator's
messages (`output`), Ctrl-C and SIGTERM noted and acted on at safe points (`interrupts`),
where a run's seconds go (`timings`) and the kit's version (`version`). Imports: the
standard library only.
"""
