"""`up --dry-run` and `down --dry-run` of an app on a server's shared HAProxy
(fleet/dry_run_proxy.py): the generation and how it goes in (unchanged, new container,
reload), the files it writes, the other apps' locks, the removal; and that a plan only reads."""

from __future__ import annotations

import pytest

from slotswap.config.layout import PROXY_CONTAINER, current_link
from slotswap.fleet import dry_run_proxy
from slotswap.remote.server import CommandResult
from slotswap.server.locking import READ_SCRIPT
from slotswap.server.proxy_contradictions import ProxyContradiction
from tests.unit.shared_proxy_server import BLOG, SHOP, Shared, only_read, shared


def test_up_dry_run_of_an_unchanged_app_says_unchanged_and_only_reads() -> None:
    server = Shared([SHOP, BLOG])
    before = dict(server.files)
    plan = dry_run_proxy.up_plan_shared(server, SHOP)
    assert "unchanged" in plan.summary, plan.summary
    text = "\n".join(plan.steps)
    assert f"generation {server.generation.name}: blog, shop" in text
    assert "files that differ from the running" in text and ": none" in text
    assert "blog's lock" not in text
    only_read(server, before)


def test_up_dry_run_of_a_changed_app_names_the_reload_the_files_and_the_locks() -> None:
    server = Shared([SHOP, BLOG])
    before = dict(server.files)
    changed = shared("shop", ["shop.test", "www.shop.test"], [18181, 18182])
    plan = dry_run_proxy.up_plan_shared(server, changed)
    text = "\n".join(plan.steps)
    assert plan.summary.endswith("; a reload"), plan.summary
    assert "differ from the running " in text and ": ~hosts.map\n" in text
    assert " -c -f /usr/local/etc/haproxy/current/haproxy.cfg" in text
    assert "take blog's lock" in text and "take the shared HAProxy's lock" in text
    assert "runtime API> show servers state blog; show servers state shop" in text
    assert "HUP" in text and "registration" in text
    only_read(server, before)


def test_up_dry_run_of_a_new_app_adds_it_and_a_first_one_starts_the_container() -> None:
    server = Shared([SHOP], running=False)
    del server.files[current_link(SHOP)]
    before = dict(server.files)
    plan = dry_run_proxy.up_plan_shared(server, BLOG)
    assert "a new container" in plan.summary
    assert "generation gen-" in "\n".join(plan.steps)
    assert ": blog, shop" in "\n".join(plan.steps)
    only_read(server, before)


def test_up_dry_run_refuses_a_contradiction_as_the_run_does() -> None:
    server = Shared([SHOP, BLOG])
    thief = shared("admin", ["shop.test"], [18185, 18186])
    with pytest.raises(ProxyContradiction) as raised:
        dry_run_proxy.up_plan_shared(server, thief)
    assert "\n" not in str(raised.value) and "shop" in str(raised.value)


def test_up_dry_run_stops_where_another_app_holds_its_lock() -> None:
    server = Shared([SHOP, BLOG])
    owner = '{"who": "bob@ci", "since": "x", "task": "deploy", "tag": "", "token": "t"}'

    def lock(argv: list[str]) -> CommandResult:
        held = argv[-2].endswith("/blog/lock")
        return CommandResult(f"held 5 30\n{owner}\n" if held else "free\n", "", 0)

    server.answers[("sh", "-c", READ_SCRIPT)] = lock
    plan = dry_run_proxy.up_plan_shared(
        server, shared("shop", ["shop.test", "www.shop.test"], [18181, 18182]))
    assert "blog's lock held by bob@ci" in plan.locked_by


def test_down_dry_run_reloads_without_the_app_then_removes_its_containers() -> None:
    server = Shared([SHOP, BLOG])
    before = dict(server.files)
    plan = dry_run_proxy.down_plan_shared(server, SHOP)
    text = "\n".join(plan.steps)
    assert plan.summary.startswith("shop leaves the shared HAProxy; blog stays on it")
    assert "state leaving" in text and ": blog\n" in text and "-backends/shop.cfg" in text
    assert "take blog's lock" in text and "HUP" in text
    assert "rm -rf /etc/slotswap/_proxy/haproxy/apps/shop" in text
    only_read(server, before)


def test_down_dry_run_of_the_last_app_removes_the_shared_haproxy() -> None:
    server = Shared([SHOP])
    before = dict(server.files)
    plan = dry_run_proxy.down_plan_shared(server, SHOP)
    text = "\n".join(plan.steps)
    assert "last app" in plan.summary
    assert f"$ docker rm --force {PROXY_CONTAINER}\n$ rm -rf /etc/slotswap/_proxy\n" in text
    only_read(server, before)
