"""The kit's tasks under their public name: `from slotswap.tasks import collection` in a
project's own fabfile (see the README). They live in `slotswap.cli.tasks`."""

from slotswap.cli.tasks import collection

__all__ = ["collection"]
