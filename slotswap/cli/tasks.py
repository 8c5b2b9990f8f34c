"""The `fab` tasks. Each loads and validates the whole inventory before it contacts a server."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from textwrap import indent as indent_text

from invoke import Collection, Context
from invoke.exceptions import Exit

from slotswap.cli import hooks, report
from slotswap.cli.build_image import build_image
from slotswap.cli.check import located, render_templates, settings_lines
from slotswap.cli.kit_task import (
    DRY_RUN_HELP,
    HOSTS_HELP,
    INVENTORY_HELP,
    JSON_HELP,
    exit_if_any_failed,
    exit_on_failure,
    inventory_path,
    kit_task,
    load,
    renewed_or_exit,
    reports_errors,
    say_per_server,
)
from slotswap.cli.live_progress import live_progress_if_terminal
from slotswap.cli.plan import in_rotation, refuse_json_with_dry_run, show_plan
from slotswap.cli.server_tasks import (
    certs_renew,
    certs_status,
    exec_task,
    logs_task,
    maintenance_off,
    maintenance_on,
)
from slotswap.cli.summary import finish_rollout
from slotswap.config import scaffold
from slotswap.config.app_env import resolve_app_env, secret_values_in
from slotswap.config.inventory import Inventory, InventoryError
from slotswap.core.output import format_table, messages_to_stderr, say, warn
from slotswap.core.timings import process_seconds
from slotswap.core.validation import InputError, validate_tag
from slotswap.fleet import certs, dry_run_move, dry_run_proxy, rollout, shared_checks
from slotswap.fleet import dry_run as dry_run_plans
from slotswap.fleet import status as fleet_status
from slotswap.fleet.batches import parse_batch
from slotswap.fleet.delivery import up_action
from slotswap.fleet.errors import (
    EXIT_BAD_INPUT,
    EXIT_CONNECT,
    EXIT_DEPLOY_FAILED,
    EXIT_OK,
    exit_code_for,
)
from slotswap.fleet.every_server import on_every_server
from slotswap.fleet.rollback_targets import rollback_targets
from slotswap.fleet.runner import in_turn, servers_of
from slotswap.remote.protocol import ServerLike
from slotswap.server import history as history_log
from slotswap.server import locking, platforms, registry_login
from slotswap.server.haproxy import down_server
from slotswap.server.locking import new_owner
from slotswap.server.proxy_down import down_shared
from slotswap.server.proxy_locks import describe_shared_lock, read_shared_lock, release_shared_lock

EXIT_HOOK_REFUSED = 5


@kit_task(help={"tag": "image tag to build (default: the UTC time, YYYYMMDDHHMM)",
            "inventory": INVENTORY_HELP,
            "push": "push the image to its registry after building (default: yes; never "
                    "with `delivery: ssh` in the inventory)"})
@reports_errors
def build(c: Context, tag: str | None = None, inventory: str | None = None,
          push: bool = True) -> None:
    """Build the app image on this machine and push it: docker build --build-arg VERSION=TAG.

    Uses the local Docker engine (honours DOCKER_HOST), for the servers' platform (as `up`
    recorded it, or build.platform), with the inventory's build.args. With `delivery: ssh`
    the image stays there: deploys stream it to the servers. Example: fab build --tag=v42
    """
    build_image(c, load(inventory), tag, push=push)


@kit_task(help={"inventory": INVENTORY_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def up(c: Context, inventory: str | None = None, dry_run: bool = False) -> None:
    """Prepare every server: app network, HAProxy in front of slots web1/web2. Idempotent.

    A worker-only host (web: false) gets the app's network alone (its role containers join
    it): no HAProxy, no config, no certificate; its dry run says so. A host turned
    web: false has its HAProxy soft-stopped (open connections finish) and its web slots
    stopped and removed; its role containers stay (take it out of the load balancer first).

    A changed config is checked by HAProxy, then applied with a reload that drops no
    connection; if HAProxy does not start with it, the previous one is put back and keeps
    running. "unchanged" means HAProxy runs the rendered config. A certificate from
    https.files that is expired or not yet valid is refused before any server is contacted.
    Warns, once per server, about a Docker Engine older than 28.3.3 (a host on the server's
    network can get past HAProxy to the slots: see the README's server checklist).
    A server whose HAProxy runs from another login's folders (root set it up; or another
    remote_dir) is carried over to this login's, with no request lost: its history,
    maintenance mode, certificate and env files come along, and the old folder is locked
    for good. With haproxy.shared, the app's backend on each server's shared
    HAProxy instead: every web server's registry read and the app checked there before any
    server changes (a contradiction on any server: exit 2, nothing changed), then on each
    server checked again, and loaded by a reload while no other app's run holds that server,
    or, for a new haproxy.image in the inventory that sets it, by a hand-over to a new
    container with no connection refused (README: Several apps on one server); a server where
    the app runs its own HAProxy is moved to the shared one, which starts beside it and takes
    over before the old one stops (its maintenance, certificate and live slot come along).
    --dry-run shows every server's steps, an HTTPS app's certificate included (with acme no
    certificate is asked for: one there is kept, a server with none gets the stand-in).
    Example: fab up
    """
    inv = load(inventory)
    # Checked before any server is contacted, in a dry run too (it would fail the same way):
    # the certificate's files or variables, the registry's password variable (exit 2).
    certificate = certs.material_for_up(inv)
    registry_login.resolve(inv, os.environ)
    if dry_run:
        shared = inv.haproxy.shared
        show_plan(inv, lambda server: dry_run_move.up_plan_moving(server, inv, certificate)
                  if shared else dry_run_plans.up_plan(server, inv),
                  first=shared_checks.check_every_server if shared else None,
                  preamble=[shared_checks.FIRST_PASS_LINE] if shared else None)
        return
    with live_progress_if_terminal(), up_action(inv, certificate) as up_one:
        results = on_every_server(inv, up_one, "up", first=(
            shared_checks.check_every_server if inv.haproxy.shared else None))
    say(format_table(("server", "result"), [(r.name, r.text) for r in results]))
    exit_on_failure("up", results)
    platform = platforms.record(inv, platforms.observed)
    if platform is None and len(set(platforms.observed.values())) > 1:
        warn("WARNING: the servers run different platforms ("
             + ", ".join(f"{n}: {p}" for n, p in platforms.observed.items())
             + "); set build.platform, or build a multi-platform image")
    issued = renewed_or_exit(lambda: certs.after_up(inv))
    if issued:
        exit_on_failure("up (certificate)", issued)


@kit_task(help={"tag": "image tag to deploy (required); must have been built (and pushed, "
                   "unless the inventory says delivery: ssh)",
            "on-failure": "what a failed server means for the others: 'stop' (default: the "
                          "servers done keep the new version) or 'rollback' (every server "
                          "that serves the new version goes back, a failed one included, "
                          "so the fleet ends on one version; the message says what each "
                          "serves)",
            "batch": "servers to swap at the same time: a number (e.g. 2) or a percentage of "
                     "the servers (e.g. 25%); the next batch starts once the whole batch has "
                     "switched (default: 1, one at a time)",
            "hosts": HOSTS_HELP,
            "skip-release": "do not run the inventory's release.command this once (it runs "
                            "in a container named APP-release-ID, killed when it runs past "
                            "release.timeout or the deploy is interrupted)",
            "force": "swap also the servers that already serve TAG from the same image, "
                     "environment and settings (default: left alone, 'unchanged')",
            "watch-each": "watch each server for timeouts.watch and stop its old slot before "
                          "the next one starts (slower; default: one watch window for the "
                          "whole rollout, or the inventory's watch.each)",
            "allow-stale": "a server that cannot pull TAG from the registry (unreachable, or "
                           "the login refused) but has a copy of TAG deploys that copy, with a "
                           "warning, although it may be an older push of TAG (default: that "
                           "server fails and nothing moves anywhere)",
            "timings": "after the summary, print per server where the seconds went: each "
                       "step's seconds and round trips (SSH commands, runtime-API lines), "
                       "and the run's phases (also in --json, always)",
            "inventory": INVENTORY_HELP, "json": JSON_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def deploy(c: Context, tag: str | None = None, on_failure: str = rollout.ON_FAILURE_STOP,
           inventory: str | None = None, batch: str | None = None, json: bool = False,
           dry_run: bool = False, hosts: str | None = None, skip_release: bool = False,
           force: bool = False, watch_each: bool = False, allow_stale: bool = False,
           timings: bool = False) -> None:
    """Roll TAG out, one server at a time, with zero downtime; stop at the first failure.

    On each server the new version starts in the idle slot and takes traffic only after
    HAProxy's own health checks pass; the old slot drains and keeps running, and the next
    server starts at once. Every new slot is watched until timeouts.watch seconds after the
    last switch: one that fails a check, drops out of rotation, whose container stops or
    restarts, or that answers too many errors (HAProxy's counters, requests it failed that
    the old slot answered instead included; inventory `watch`) sends
    the traffic back to its old slot and stops the rollout. Then the old slots are stopped
    (kept for a rollback). A server that fails keeps serving its old version. The inventory's
    roles (queue workers...) move with the web: after a server's switch its new role
    containers must pass their check, are watched in the same window, and the old ones get
    their stop signal and stop_timeout with the old slot; a worker-only host (web: false)
    moves its role containers alone (one still running the web's containers is refused
    before any server changes: `up` takes them off); a role no longer in the inventory
    stops once the window closes. A server that already serves TAG (same image,
    environment and settings) is left alone. --batch swaps several servers at a time.
    Before the first swap every server gets the image, in parallel: pulled, or with
    `delivery: ssh` streamed from this machine's Docker over SSH, only the layers it lacks.
    Example: fab deploy --tag=v42   or   fab deploy --tag=v42 --batch=25%
    """
    if tag is None:
        raise Exit("error: --tag is required (the image tag to deploy, e.g. --tag=v42)",
                   code=EXIT_BAD_INPUT)
    tag = validate_tag(tag)
    if on_failure not in rollout.ON_FAILURE_POLICIES:
        raise Exit(f"error: --on-failure must be one of {', '.join(rollout.ON_FAILURE_POLICIES)}"
                   f", got {on_failure!r}", code=EXIT_BAD_INPUT)
    batch_size = parse_batch(batch) if batch is not None else None
    refuse_json_with_dry_run(json, dry_run)
    if json:
        messages_to_stderr()
    inv = load(inventory, hosts)
    servers_at_a_time = batch_size.servers(len(inv.hosts)) if batch_size else 1
    registry_login.resolve(inv, os.environ)  # a missing password: exit 2, nothing contacted
    if dry_run:
        # As the deploy, before any server: a secret not set exits 2 (its value never shown).
        app_env = resolve_app_env(inv, os.environ)
        show_plan(inv, in_rotation(inv, lambda server: dry_run_plans.deploy_plan(
            server, inv, tag, pull=True, task="deploy", app_env=None if force else app_env,
            env=app_env)),
            rollout=dry_run_plans.rollout_steps(
                inv, tag, batch=servers_at_a_time, force=force, release=not skip_release,
                watch_each=watch_each or inv.watch.each))
        return
    run_pre_deploy_hook(inv, "deploy", tag)
    started_up = process_seconds()
    with live_progress_if_terminal():
        result = rollout.deploy(inv, tag, on_failure=on_failure, batch=servers_at_a_time,
                                run_release=not skip_release, force=force,
                                watch_each=True if watch_each else None,
                                allow_stale=allow_stale)
    if started_up is not None:
        result.timings.record_first("start-up, hooks", started_up)
    finish_rollout(inv, "deploy", result, json, show_timings=timings)


def show_rollback_plan(inv: Inventory, tag_of: Callable[[str], str], tag: str) -> None:
    """A rollback's dry run: as the deploy's, without a release command; a secret not set
    exits 2 before any server, as the rollback does."""
    app_env = resolve_app_env(inv, os.environ)
    show_plan(inv, in_rotation(inv, lambda server: dry_run_plans.deploy_plan(
        server, inv, tag_of(server.name), pull=False, task="rollback", app_env=app_env)),
        rollout=dry_run_plans.rollout_steps(inv, tag, batch=1, watch_each=inv.watch.each,
                                            release=False, force=False))


def run_pre_deploy_hook(inv: Inventory, task_name: str, tag: str) -> None:
    try:
        hooks.before(inv, os.environ, task=task_name, tag=tag)
    except hooks.HookFailedError as error:
        raise Exit(f"error: {error}; nothing was contacted or changed",
                   code=EXIT_HOOK_REFUSED) from error


@kit_task(help={"to": "tag to return every server to (default: per server, what it served "
                      "before its last deploy; a deploy that did not finish is undone)",
                "hosts": HOSTS_HELP,
                "inventory": INVENTORY_HELP, "json": JSON_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def rollback(c: Context, to: str | None = None, inventory: str | None = None,
             json: bool = False, dry_run: bool = False, hosts: str | None = None) -> None:
    """Return every server to its previous version, with the same zero-downtime swap.

    The previous version comes from each server's history (never a version that failed);
    a deploy that did not finish is undone (the servers it moved go back, the others stay;
    one that moved no server leaves nothing to undo: exit 0, every server as it is).
    The container the deploy kept stopped starts again, nothing is pulled.
    Example: fab rollback   or  fab rollback --to=v41
    """
    refuse_json_with_dry_run(json, dry_run)
    if json:
        messages_to_stderr()
    inv = load(inventory, hosts)
    if to is not None:
        tag = validate_tag(to)
        if dry_run:
            show_rollback_plan(inv, lambda name: tag, tag)
            return
        run_pre_deploy_hook(inv, "rollback", tag)
        with live_progress_if_terminal():
            result = rollout.deploy(inv, tag, task="rollback", pull=False, run_release=False)
    else:
        targets, problems = rollback_targets(inv)
        if problems:
            lines = "\n".join(f"  {name}: {why}" for name, why in problems.items())
            raise Exit(f"error: nothing was changed; no version to return to on:\n{lines}\n"
                       "give one with --to=TAG", code=EXIT_DEPLOY_FAILED)
        tags = sorted(set(targets.values()))
        if dry_run:
            show_rollback_plan(inv, targets.__getitem__, "/".join(tags))
            return
        run_pre_deploy_hook(inv, "rollback", "/".join(tags))
        with live_progress_if_terminal():
            result = rollout.deploy(inv, "/".join(tags), task="rollback", tags=targets,
                                    pull=False, run_release=False)
    finish_rollout(inv, "rollback", result, json)


@kit_task(help={"inventory": INVENTORY_HELP, "lines": "entries per server (default 10)",
                "output": "show under each entry what its release command printed (kept in "
                          "the history, the app's secret values masked; a deploy's "
                          "migrations, say)",
                "json": "print one JSON document on stdout: per server, every field of each "
                        "entry, the release command's output included"})
@reports_errors
def history(c: Context, inventory: str | None = None, lines: int = 10, output: bool = False,
            json: bool = False) -> None:
    """Show each server's history: time, who, task, from and to tag, outcome, seconds.

    --output adds what a release command printed, the values of the app's secrets masked
    (also those this shell sets, in entries kept before). Example: fab history --output
    """
    if json:
        messages_to_stderr()
    inv = load(inventory)
    failed: list[Exception] = []
    servers: list[tuple[str, str, list[history_log.HistoryEntry] | None, str | None]] = []

    def read(server: ServerLike) -> list[history_log.HistoryEntry]:
        entries = history_log.read(server, inv)[-lines:] if lines > 0 else []
        return history_log.masked(entries, secret_values_in(inv, os.environ))

    for done in in_turn(servers_of(inv), read):
        name, address = done.server.name, done.server.host.address
        if done.error is not None:
            say(f"{name}: ERROR {done.error}")
            failed.append(done.error)
            servers.append((name, address, None, str(done.error)))
            continue
        servers.append((name, address, done.value, None))
        say(f"{name} ({address}):")
        say(indent_text(history_log.render(done.value or [], with_output=output), "    "))
    if json:
        report.emit(history_log.document(servers))
    exit_if_any_failed(failed)


@kit_task(name="lock", help={"inventory": INVENTORY_HELP})
@reports_errors
def lock_status(c: Context, inventory: str | None = None) -> None:
    """Show which servers are locked by a run: by whom, since when, and how old the lock is.

    A running deploy renews its locks every timeouts.lease/3 seconds; a lock not renewed for
    longer than its lease (by the server's clock) is shown as stale: its run is gone, and
    the next run takes it over by itself. With haproxy.shared, the server's shared HAProxy's
    lock too (held by an app's up, down or certs.renew while it changes that HAProxy, renewed
    as the app's): by whom, and until when. Example: fab lock
    """
    inv = load(inventory)

    def read(server: ServerLike) -> str:
        holder = locking.read_lock(server, inv)
        line = f"locked by {holder.describe()}" if holder else "free"
        if inv.haproxy.shared:
            line += "; " + describe_shared_lock(read_shared_lock(server, inv))
        return line

    exit_if_any_failed(say_per_server(servers_of(inv), read, str))


@kit_task(help={"server": "name (or address) of the server whose lock to release",
            "all": "release the locks of every server of the inventory",
            "proxy": "release the server's shared HAProxy's lock (haproxy.shared) instead of "
                     "the app's",
            "inventory": INVENTORY_HELP})
@reports_errors
def unlock(c: Context, server: str | None = None, all: bool = False, proxy: bool = False,
           inventory: str | None = None) -> None:
    """Release a lock at once (check with `fab lock` first that its run is gone).

    Not needed for a lock whose run is gone: once not renewed for its lease, the next run
    takes it over by itself. A run still going whose lock is released this way changes
    nothing more on that server and exits 4. With --proxy, the server's shared HAProxy's
    lock instead, whichever app's run holds it. Example: fab unlock --server=web-b --proxy
    """
    inv = load(inventory)
    if proxy and not inv.haproxy.shared:
        raise InputError("--proxy: this inventory's HAProxy is not shared (haproxy.shared): "
                         "its lock is the app's")
    chosen = [s for s in servers_of(inv)
              if all or server in (s.name, s.host.address)]
    if not chosen:
        raise Exit("error: give --server=NAME (one of: "
                   + ", ".join(h.name for h in inv.hosts) + ") or --all",
                   code=EXIT_BAD_INPUT)
    what = "the shared HAProxy's lock" if proxy else "the lock"
    failed = say_per_server(
        chosen, lambda target: (release_shared_lock if proxy else locking.force_release)(
            target, inv),
        lambda holder: f"released {what} of {holder.describe()}" if holder
        else ("the shared HAProxy was not locked" if proxy else "was not locked"))
    if failed:
        raise Exit(f"error: {failed[0]}", code=exit_code_for(failed[0]))


@kit_task(help={"inventory": INVENTORY_HELP,
                "schema": "only print the path of the JSON Schema of hosts.yaml that this "
                          "installation ships (for an editor's yaml-language-server)"})
@reports_errors
def check(c: Context, inventory: str | None = None, schema: bool = False) -> None:
    """Check the inventory and the templates without contacting any server.

    Prints every setting as the kit resolves it (defaults filled in, relative paths made
    absolute, secrets masked: only whether this environment sets them) and renders the
    templates; exits 2 naming the key and its line when something is wrong.
    Example: fab check --inventory=prod.yaml
    """
    if schema:
        print(scaffold.SCHEMA)
        return
    path = Path(inventory_path(inventory)).expanduser()
    try:
        inv = load(inventory)
    except InventoryError as error:
        raise Exit(f"error: {located(error, path)}", code=EXIT_BAD_INPUT) from error
    for line in settings_lines(inv):
        say(line)
    rendered = render_templates(inv)
    say(f"templates: {', '.join(rendered)} rendered")
    count = len(inv.hosts)
    say(f"{inv.path}: OK, {count} server{'s' if count != 1 else ''}; no server was contacted")


@kit_task(help={"inventory": INVENTORY_HELP, "hosts": HOSTS_HELP,
            "json": "print one JSON document on stdout (per server: name, address, web, "
                    "live slot, version, both slots as HAProxy and Docker see them, its role "
                    "containers (name, role, version, generation, state, restarts), error; "
                    "with haproxy.shared, `proxy`: the shared HAProxy, its apps and routes)"})
@reports_errors
def status(c: Context, inventory: str | None = None, json: bool = False,
           hosts: str | None = None) -> None:
    """Show, per server, the live slot, the version it serves, and HAProxy's view of both slots.

    Then each role container there (role, name, version, generation, running or stopped,
    restarts). A worker-only host (web: false) shows its role containers only. With
    haproxy.shared, then the server's shared HAProxy: its image and version, whose inventory
    its settings come from, every app on it (present or leaving) with its live slot and
    version, and the routes as HAProxy has them now (`shop.test -> shop`).
    Example: fab status
    """
    if json:
        messages_to_stderr()
    inv = load(inventory, hosts)
    reports = fleet_status.status(inv)
    for server_report in reports:
        if server_report.error:
            say(f"{server_report.name} ({server_report.address}): ERROR {server_report.error}")
            continue
        mode = " (MAINTENANCE: answering 503)" if server_report.maintenance else ""
        if not server_report.web:
            say(f"{server_report.name} ({server_report.address}): worker-only (web: false, "
                f"no slots, no HAProxy), roles running {server_report.version}")
        else:
            say(f"{server_report.name} ({server_report.address}): live {server_report.live}, "
                f"serving {server_report.version}{mode}")
        for line in server_report.slots:
            say(f"    {line}")
        if server_report.haproxy and server_report.proxy is None:  # else its first line
            say(f"    haproxy  {server_report.haproxy}")
        for container in server_report.roles:
            say(f"    {container.describe()}")
        for line in server_report.proxy.lines() if server_report.proxy is not None else ():
            say(f"    {line}")
    exit_code = EXIT_CONNECT if any(r.error for r in reports) else EXIT_OK
    if json:
        report.emit(report.status_document(reports, exit_code))
    if exit_code:
        raise Exit(code=exit_code)


def down_shared_action(server: ServerLike, inventory: Inventory,
                       progress: Callable[[str], None]) -> str:
    return down_shared(server, inventory, progress, new_owner("down"))


@kit_task(help={"inventory": INVENTORY_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def down(c: Context, inventory: str | None = None, dry_run: bool = False) -> None:
    """Remove the app's containers (slots and HAProxy), network and config from every server.

    Role containers too, on every host that runs them (worker-only hosts included): the
    running ones first get their role's stop signal and stop_timeout to finish their jobs;
    their env files go with the config folder. The history stays. With haproxy.shared, the
    shared HAProxy is reloaded without the app (the last app's down removes it). Example: fab down
    """
    inv = load(inventory)
    if dry_run:
        show_plan(inv, lambda server: (dry_run_proxy.down_plan_shared if inv.haproxy.shared
                                       else dry_run_plans.down_plan)(server, inv))
        return
    with live_progress_if_terminal():
        results = on_every_server(inv, down_shared_action if inv.haproxy.shared else down_server,
                                  "down")
    exit_on_failure("down", results)


@kit_task(help={"force": "overwrite the files that exist (default: refuse, writing nothing)",
                "templates": "also copy the kit's templates into templates/, to edit them (a "
                             "copy replaces the kit's file and no longer follows its changes)",
                "shared": "the app on each server's shared HAProxy, beside other apps "
                          "(haproxy.shared: true and the names routed to it)"})
@reports_errors
def init(c: Context, force: bool = False, templates: bool = False,
         shared: bool = False) -> None:
    """Start a project here: write a short hosts.yaml (app, image, ssh, hosts).

    Every other key has a default, shown commented out in the file; `check` prints them
    all. With --templates, templates/haproxy.cfg.j2 too: a templates/ folder next to the
    inventory is used, file by file, before the kit's own. With --shared, the app goes on
    each server's shared HAProxy with other apps (haproxy.shared: true, names). Never
    overwrites without --force.
    Example: slotswap init   or   fab init --templates   or   slotswap init --shared
    """
    folder = Path.cwd()
    try:
        written = scaffold.write_starter(folder, force=force, templates=templates,
                                         shared=shared)
    except scaffold.ScaffoldError as error:
        raise Exit(f"error: {error}", code=EXIT_BAD_INPUT) from error
    for path in written:
        say(f"wrote {path}")
    say("next: edit hosts.yaml (app, image, ssh, hosts), check it with `check`, then `up` "
        "and `deploy --tag=T`")


def collection() -> Collection:
    tasks = Collection(init, check, build, up, deploy, rollback, status, history, lock_status,
                       unlock, down)
    tasks.add_task(logs_task, name="logs")
    tasks.add_task(exec_task, name="exec")
    tasks.add_collection(Collection("maintenance"))
    tasks.collections["maintenance"].add_task(maintenance_on, name="on")
    tasks.collections["maintenance"].add_task(maintenance_off, name="off")
    tasks.add_collection(Collection("certs"))
    tasks.collections["certs"].add_task(certs_status, name="show", default=True)
    tasks.collections["certs"].add_task(certs_renew, name="renew")
    return tasks

