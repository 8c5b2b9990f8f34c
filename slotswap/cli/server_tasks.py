"""The `fab` tasks that act on what runs without releasing a version: the app's logs, a
command beside it (`exec`), the maintenance page, the HTTPS certificate. Each loads and
validates the whole inventory before it contacts a server."""

from __future__ import annotations

import dataclasses
import sys

from invoke import Context
from invoke.exceptions import Exit

from slotswap.cli import report
from slotswap.cli.kit_task import (
    DRY_RUN_HELP,
    HOSTS_HELP,
    INVENTORY_HELP,
    exit_on_failure,
    kit_task,
    load,
    renewed_or_exit,
    reports_errors,
)
from slotswap.cli.plan import in_rotation, show_plan
from slotswap.config.inventory import Inventory
from slotswap.config.layout import haproxy_dir
from slotswap.core.output import format_table, messages_to_stderr, say, warn
from slotswap.core.validation import InputError
from slotswap.fleet import certs
from slotswap.fleet import dry_run as dry_run_plans
from slotswap.fleet.errors import EXIT_CONNECT, EXIT_DEPLOY_FAILED
from slotswap.fleet.every_server import Progress, on_every_server
from slotswap.fleet.runner import connected, servers_of
from slotswap.fleet.serving_checks import refuse_two_haproxys
from slotswap.remote.protocol import ServerLike
from slotswap.server import logs, maintenance, one_off
from slotswap.server.role_status import hosts_of_role, role_by_name, with_web_slots


@kit_task(help={"slot": "whose logs: 'live' (default: the slot serving) or 'idle' (the other "
                        "one, e.g. a new version that failed its checks)",
                "role": "the running containers of this role (roles: in the inventory) "
                        "instead of a slot's, on the servers that run it; each line "
                        "prefixed by the server and the container",
                "follow": "keep streaming from every server at once until Ctrl-C",
                "lines": "lines from the end of each log to show first (default 50)",
                "hosts": HOSTS_HELP, "inventory": INVENTORY_HELP})
@reports_errors
def logs_task(c: Context, slot: str = logs.LIVE, role: str | None = None,
              follow: bool = False, lines: int = 50, inventory: str | None = None,
              hosts: str | None = None) -> None:
    """Show the app's container logs of every server, each line prefixed by the server.

    A worker-only host (web: false) has no slot: --role=NAME shows its role's containers.
    Example: fab logs --slot=idle --lines=100   or   fab logs --follow --role=worker
    """
    logs.validate_choice(slot, lines)
    inv = load(inventory, hosts)
    if role is not None:
        inv = hosts_of_role(inv, role_by_name(inv, role))
    else:
        inv = with_web_slots(inv, "--role=NAME shows the logs of its roles")
    try:
        with connected(servers_of(inv)) as servers:
            sources = [source for server in servers for source in (
                logs.pick_role(server, inv, role) if role is not None
                else [logs.pick_slot(server, inv, slot)])]
            if follow:
                logs.follow(sources, lines, say)
                return
            problems = logs.show(sources, lines, say)
    except KeyboardInterrupt:
        return
    if problems:
        raise Exit("error: " + "; ".join(problems), code=EXIT_DEPLOY_FAILED)


@kit_task(help={"inventory": INVENTORY_HELP,
                "json": "print one JSON document on stdout (per server: names, issuer, serial, "
                        "not_after, days_left, validity: valid, expiring (fewer than "
                        "https.renew_days left), expired or not yet valid; error)"})
@reports_errors
def certs_status(c: Context, inventory: str | None = None, json: bool = False) -> None:
    """Show the certificate each server's HAProxy serves: names, issuer, expiry.

    Read from the running HAProxy (runtime API), so it is what clients get. A warning names
    each server whose certificate is expired, not yet valid, or has fewer than
    https.renew_days left.
    Example: fab certs --json
    """
    if json:
        messages_to_stderr()
    inv = load(inventory)
    certs.https_of(inv)
    fleet = certs.read_fleet(inv)  # one read per server, for the table and the document
    renew_days = certs.https_of(inv).renew_days
    rows, ok, warnings = certs.describe_fleet(fleet, renew_days)
    say(format_table(("server", "address", "names", "issuer", "expires", "left"), rows))
    for line in warnings:
        warn(line)
    if json:
        report.emit(certs.document(fleet, renew_days))
    if not ok:
        raise Exit(code=EXIT_CONNECT)


@kit_task(help={"inventory": INVENTORY_HELP,
                "force": "renew even when every certificate has more than https.renew_days "
                         "left",
                "dry-run": DRY_RUN_HELP + "; with acme no certificate is asked for"})
@reports_errors
def certs_renew(c: Context, inventory: str | None = None, force: bool = False,
                dry_run: bool = False) -> None:
    """Renew the HTTPS certificate where it is due, on every server, with no reload.

    With acme: one new certificate when a server's has fewer than https.renew_days left
    (or --force), installed through HAProxy's runtime API; safe to run daily from cron or
    CI. With files: your files, on every server that has others (refused, exit 2, when
    expired or not yet valid; a warning when fewer than https.renew_days are left).
    Example: fab certs.renew   or   fab certs.renew --force --dry-run
    """
    inv = load(inventory)
    https = certs.https_of(inv)
    if dry_run:
        renewal = certs.plan_renewal(inv, force=force)
        if renewal.ends is not None:
            exit_on_failure("certs.renew", renewal.ends)  # a server that cannot be read
        show_plan(certs.https_hosts(inv),
                  lambda server: dry_run_plans.certs_plan(server, inv, renewal),
                  preamble=certs.renewal_lines(https, renewal))
        return
    results = renewed_or_exit(lambda: certs.renew(inv, force=force))
    say(format_table(("server", "result"), [(r.name, r.text) for r in results]))
    exit_on_failure("certs.renew", results)


@kit_task(name="exec",
          help={"command": "the command and its arguments, split as a shell would (never run "
                           "by a shell), e.g. --command='bin/rails db:migrate:status'",
                "live": "run it inside the live slot's container (docker exec: the command "
                        "as given, without the image's entrypoint in front) instead of a "
                        "one-off container of its image",
                "interactive": "with a terminal of its own (a console), when this one is a "
                               "terminal",
                "role": "beside this role (roles: in the inventory) instead of the web "
                        "slots: its image, options and env file (with --live, inside its "
                        "first running container; the live slot's version first)",
                "hosts": "the server to run it on, by name (default: the inventory's first "
                         "with web slots, or with --role the first that runs the role)",
                "inventory": INVENTORY_HELP})
@reports_errors
def exec_task(c: Context, command: str = "", live: bool = False, interactive: bool = False,
              role: str | None = None, inventory: str | None = None,
              hosts: str | None = None) -> None:
    """Run a command beside the live version on one server; exit with its exit code.

    By default in a one-off container of the live slot's image, with the app's network and
    environment (env file), named APP-exec-ID, removed afterwards and killed when this run
    is interrupted or loses its connection; with --live inside the live container. With
    --role=NAME, beside that role's running containers: their image, the role's container
    options and its env file (--live: in the role's first running container); on a server
    with web slots, those of the version the live slot serves, if any run.
    Example: fab exec --command='bin/rails console' --interactive --hosts=web-a
    """
    words = one_off.parse_command(command)
    inv = load(inventory, hosts)
    if hosts is not None and len(inv.hosts) != 1:
        raise InputError("exec runs on one server: give one name with --hosts")
    settings = None if role is None else role_by_name(inv, role)
    if settings is not None:
        inv = hosts_of_role(inv, settings)
    else:
        inv = with_web_slots(inv, "--role=NAME runs the command beside one of its roles")
    inv = dataclasses.replace(inv, hosts=inv.hosts[:1])
    tty = interactive and sys.stdin.isatty() and sys.stdout.isatty()
    if interactive and not tty:
        warn("--interactive: this is not a terminal; running without one")
    with connected(servers_of(inv)[:1]) as (server,):  # an error: one line (reports_errors)
        code = one_off.run(server, inv, words, live=live, interactive=tty, say=say,
                           on_line=print_line, role=settings)
    if code != 0:
        raise Exit(code=code if 0 < code < 256 else 1)


def print_line(line: str) -> None:
    print(line, flush=True)


# A worker-only host (web: false) takes no request: maintenance mode leaves it out.
MAINTENANCE_WHERE = "maintenance mode is HAProxy's, on the servers with web slots"


@kit_task(help={"message": "the page's text (HTML-escaped; the page is templates/"
                           "maintenance.html.j2, which a project may override)",
                "retry-after": "seconds clients are told to wait (Retry-After header; "
                               "default 120)",
                "hosts": HOSTS_HELP, "inventory": INVENTORY_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def maintenance_on(c: Context, message: str = maintenance.DEFAULT_MESSAGE,
                   retry_after: int = maintenance.DEFAULT_RETRY_AFTER,
                   inventory: str | None = None, hosts: str | None = None,
                   dry_run: bool = False) -> None:
    """Answer every request with a 503 maintenance page on every server; the app runs on.

    Through HAProxy's runtime API: no reload, no connection dropped; requests already in
    the app finish. `status` shows it; `maintenance.off` ends it.
    Example: fab maintenance.on --message="Back at 14:00 UTC"
    """
    if not 0 <= retry_after <= 86400:
        raise InputError(f"--retry-after must be 0 to 86400 seconds, got {retry_after}")
    inv = with_web_slots(load(inventory, hosts), MAINTENANCE_WHERE)
    entries = maintenance.map_entries(maintenance.render_page(inv, message), retry_after)
    if dry_run:
        show_plan(inv, in_rotation(inv, lambda server: dry_run_plans.maintenance_plan(
            server, inv, entries)))
        return
    def switch_on(server: ServerLike, inv: Inventory, progress: Progress) -> str:
        return maintenance.switch_on(server, haproxy_dir(inv), entries, progress)

    # A second HAProxy beside the first would not learn of it: refused before any change.
    results = on_every_server(inv, switch_on, "maintenance.on", first=refuse_two_haproxys,
                              in_rotation=True)
    say(format_table(("server", "result"), [(r.name, r.text) for r in results]))
    exit_on_failure("maintenance.on", results)


@kit_task(help={"hosts": HOSTS_HELP, "inventory": INVENTORY_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def maintenance_off(c: Context, inventory: str | None = None, hosts: str | None = None,
                    dry_run: bool = False) -> None:
    """Let requests reach the app again on every server (ends maintenance.on).

    Example: fab maintenance.off
    """
    inv = with_web_slots(load(inventory, hosts), MAINTENANCE_WHERE)
    if dry_run:
        show_plan(inv, in_rotation(inv, lambda server: dry_run_plans.maintenance_plan(
            server, inv, None)))
        return
    def switch_off(server: ServerLike, inv: Inventory, progress: Progress) -> str:
        return maintenance.switch_off(server, haproxy_dir(inv), progress)

    results = on_every_server(inv, switch_off, "maintenance.off", first=refuse_two_haproxys,
                              in_rotation=True)
    say(format_table(("server", "result"), [(r.name, r.text) for r in results]))
    exit_on_failure("maintenance.off", results)
