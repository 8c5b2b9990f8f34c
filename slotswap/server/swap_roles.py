"""The role containers' part of a swap on a web server (part of slotswap.server.swap.SlotSwap;
the containers themselves: slotswap.server.role_run): started and checked right after the
switch, the traffic sent back first when they fail, and a fresh look at them before a
version is taken for proven."""

from __future__ import annotations

from collections.abc import Callable

from slotswap.server.role_run import RoleCheckFailed, RoleRun
from slotswap.server.swap_errors import SwapRolledBack
from slotswap.server.swap_plan import WatchFailure


class RoleSteps:
    """SlotSwap's steps with its role containers. What they use of the swap, which SlotSwap
    has."""

    roles: RoleRun | None
    tag: str
    old_version: str | None
    traffic_back: bool
    progress: Callable[[str], None]
    on_failure: Callable[[str], None]
    send_back: Callable[..., bool]
    clean_up_failed: Callable[..., str]
    failure: Callable[[BaseException], BaseException]

    def start_roles(self, new: str, old: str) -> None:
        """After the switch: the new version's role containers, started and checked (the old
        ones run on). When they fail, or the run is interrupted or loses the server here,
        the version is not proven: the web traffic goes back to the old slot, which still
        runs, and the new role containers stop (RoleRun.start). Raises SwapRolledBack."""
        assert self.roles is not None
        try:
            self.roles.start()
        except BaseException as error:
            what = (str(error) if isinstance(error, RoleCheckFailed) else "interrupted"
                    if not isinstance(error, Exception) else
                    f"its role containers could not be started ({type(error).__name__}: "
                    f"{error})")
            if self.send_back(new, old, say=f"{new} ({self.tag}): {what}; traffic is back on "
                              f"{old} ({self.old_version})"):
                self.clean_up_failed(new, with_output=False)
            if not isinstance(error, Exception):
                raise
            if not self.traffic_back:
                raise self.failure(error) from error
            rolled_back = (f"{self.tag} took traffic in {new}, then {what}; rolled back to "
                           f"{self.old_version} in {old}")
            self.on_failure(rolled_back)
            output = error.output if isinstance(error, RoleCheckFailed) else ""
            raise SwapRolledBack(rolled_back + (f"; the last output of the role container:\n"
                                                f"{output}" if output else ""),
                                 f"{self.old_version} in {old}") from error

    def roles_failing_now(self) -> WatchFailure | None:
        """A fresh look at the new role containers: why they fail the version, or None
        (also when Docker does not answer: the watch's last look found them running)."""
        try:
            why = self.roles.trouble() if self.roles is not None else None
        except Exception:
            return None
        return WatchFailure("lost a role container", why) if why else None
