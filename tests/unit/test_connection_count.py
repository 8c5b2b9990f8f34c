"""slotswap.remote.server counts the SSH connections a task opens (the fleet
benchmark reports it)."""

from __future__ import annotations

import threading

from slotswap.remote import server as remote


def test_every_opened_connection_is_counted_once_also_from_threads() -> None:
    before = remote.connections_opened()
    threads = [threading.Thread(target=lambda: [remote._count_connection() for _ in range(500)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert remote.connections_opened() - before == 4000
