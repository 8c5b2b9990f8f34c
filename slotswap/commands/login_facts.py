"""Pure: the one line that asks a server who the SSH login is (its numeric ids and its HOME),
and the parser of the answer. `slotswap.remote.server` asks it once per server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoginFacts:
    """The SSH login as the server sees it: its numeric ids and its HOME."""

    uid: int
    gid: int
    home: str


# One round trip, once per server: the ids (the admin socket is made for them) and the home
# (a non-root login's default folder). HOME last: it may hold spaces.
LOGIN_FACTS_LINE = 'id -u && id -g && printf "%s\\n" "$HOME"'


def parse_login_facts(stdout: str) -> LoginFacts | None:
    """Pure: `id -u`, `id -g` and $HOME, a line each; None if it is not that."""
    lines = stdout.split("\n")
    if len(lines) < 3 or not lines[0].isdigit() or not lines[1].isdigit():
        return None
    return LoginFacts(int(lines[0]), int(lines[1]), lines[2])
