"""What `rollback` returns each server to when no tag is given, from the servers' histories.

After a deploy or rollback run that did not finish (interrupted, failed, or sent back by its
watch on some server), a plain `rollback` undoes that run: each server it moved and left on
its new version goes back to what it served before it; every other server stays as it is
(a run that moved no server leaves nothing to undo: every server stays, which the rollout
then finds to do nothing, exit 0).
After a run that finished, each server goes back to the version it served before its last
successful change (slotswap.server.history.rollback_target)."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.config.inventory import Inventory
from slotswap.core.output import say
from slotswap.fleet.errors import describe_error
from slotswap.fleet.runner import in_turn, servers_of
from slotswap.remote.protocol import ServerLike
from slotswap.server import history
from slotswap.server.history import HistoryEntry
from slotswap.server.role_swap import role_versions
from slotswap.server.slots import describe_serving, read_slots, serving_views


@dataclass(frozen=True)
class ServerFacts:
    """One server as a rollback sees it: the version it serves (None: none, or two), said
    as the summary says it, and its history."""

    serving: str | None
    described: str
    entries: list[HistoryEntry]
    several: bool = False  # a worker-only host whose workers run several versions


@dataclass(frozen=True)
class RunToUndo:
    """The fleet's last run, which did not finish: its entries on each server (none on a
    server it did not reach, or could not record on)."""

    entries: dict[str, list[HistoryEntry]]

    @property
    def new_versions(self) -> set[str]:
        return {entries[0].to_tag for entries in self.entries.values() if entries}

    def lost(self, facts: ServerFacts, own: list[HistoryEntry]) -> bool:
        """The server serves one of the run's new versions, with no entry of the run and a
        history that says it served another: the run lost it before it could record."""
        return (not own and facts.serving in self.new_versions
                and history.served_after(facts.entries) not in (None, facts.serving))

    @property
    def first(self) -> HistoryEntry:
        return min((e for entries in self.entries.values() for e in entries),
                   key=lambda e: e.time)

    def describe(self) -> str:
        first = self.first
        outcomes = sorted({e.outcome for entries in self.entries.values() for e in entries
                           if e.outcome not in history.DONE})
        return (f"the last {first.task} ({first.to_tag}, {first.time} by {first.who}) did "
                f"not finish ({', '.join(outcomes)})")


def rollback_targets(inventory: Inventory) -> tuple[dict[str, str], dict[str, str]]:
    """Per server, the version to return to; and, for the servers where none is known,
    why. Says which run it undoes, when it undoes an unfinished one."""
    found, problems = {}, {}
    for done in in_turn(servers_of(inventory), lambda server: read_facts(
            server, inventory), contain=(Exception,)):
        name = done.server.name
        if done.error is not None:
            problems[name] = describe_error(done.error)
        elif done.value is not None:
            found[name] = done.value
    run = unfinished_last_run(found)
    targets, why_none = (plan_undo(found, run) if run is not None
                         else plan_previous(found))
    if run is not None:
        moved = [f"{name} back to {tag}" + (" alone" if tag == found[name].serving else "")
                 for name, tag in targets.items()
                 if tag != found[name].serving or found[name].several]
        kept = [name for name, tag in targets.items()
                if tag == found[name].serving and not found[name].several]
        stay = (f"{kept[0]} stays as it is" if len(kept) == 1
                else f"{', '.join(kept)} stay as they are")
        left = [] if moved or why_none else ["nothing left to undo"]
        say(f"{run.describe()}: rollback undoes it: "
            + "; ".join(moved + [stay] * bool(kept) + left))
    return targets, {**problems, **why_none}


def read_facts(server: ServerLike, inventory: Inventory) -> ServerFacts:
    if not server.host.web:  # what its role containers run
        versions, described = role_versions(server, inventory)
        entries = history.read(server, inventory)
        return ServerFacts(worker_only_serving(versions, entries), described, entries,
                           several=len(versions) > 1)
    views = read_slots(server, inventory)
    serving = [v.version for v in serving_views(views)]
    return ServerFacts(serving[0] if len(serving) == 1 else None, describe_serving(views),
                       history.read(server, inventory))


def worker_only_serving(versions: list[str], entries: list[HistoryEntry]) -> str | None:
    """Pure: the version a worker-only server counts as running: the one its workers run;
    when they run several (a run cut once the new workers ran, before the old ones
    stopped), the one its history last says it runs, if it is among them. A rollback to
    a version stops every other version's workers there."""
    if len(versions) == 1:
        return versions[0]
    said = history.served_after(entries)
    return said if said in versions else None


def unfinished_last_run(found: dict[str, ServerFacts]) -> RunToUndo | None:
    """Pure: the run of the fleet's newest deploy or rollback entry, when it did not finish
    (an entry of it is neither "deployed" nor "unchanged"); None otherwise, or when that
    entry has no run id (written by an older release). Entries of the same second: the
    later in its server's history is the newer."""
    runs = [(e.time, at, e) for facts in found.values()
            for at, e in enumerate(facts.entries) if e.task in history.RUN_TASKS]
    if not runs:
        return None
    newest = max(runs, key=lambda found_at: found_at[:2])[2]
    if not newest.run:
        return None
    entries = {name: [e for e in facts.entries if e.run == newest.run]
               for name, facts in found.items()}
    run = RunToUndo(entries)
    if all(e.outcome in history.DONE for of_server in entries.values() for e in of_server) \
            and not any(run.lost(facts, entries[name]) for name, facts in found.items()):
        return None
    return run


def plan_undo(found: dict[str, ServerFacts],
              run: RunToUndo) -> tuple[dict[str, str], dict[str, str]]:
    """Pure: a server the run moved and left on its new version goes back to what it
    served before the run (its first entry of the run says both); a server that serves one
    of the run's new versions with no entry of the run (the run lost it before it could
    record) goes back to what its history last says it served; every other server stays."""
    targets, problems = {}, {}
    for name, facts in found.items():
        if facts.serving is None:
            problems[name] = f"it does not serve one version ({facts.described})"
            continue
        own = run.entries[name]
        if own:
            # A run stopped before its swap read nothing: its entry has no from-version, and
            # what the server served before the run is what its history said then.
            before: str | None = own[0].from_tag or history.served_after(
                facts.entries[:facts.entries.index(own[0])])
            moved = facts.serving == own[0].to_tag != before
        else:
            before = history.served_after(facts.entries)
            moved = run.lost(facts, own)
        if moved and not before:
            problems[name] = (f"no earlier version in its history for what it serves "
                              f"({facts.described})")
        else:
            targets[name] = before if moved and before else facts.serving
    return targets, problems


def plan_previous(found: dict[str, ServerFacts]) -> tuple[dict[str, str], dict[str, str]]:
    """Pure: each server to the version it served before its last successful change. One
    whose history does not say how it came to serve what it serves (a run lost it before it
    could record) goes back to what its history last says it served."""
    targets, problems = {}, {}
    for name, facts in found.items():
        target = history.rollback_target(facts.entries, facts.serving)
        if not target and facts.serving is not None:
            last = history.served_after(facts.entries)
            target = last if last != facts.serving else None
        if target:
            targets[name] = target
        else:
            problems[name] = (f"no earlier version in its history for what it serves "
                              f"({facts.described})")
    return targets, problems
