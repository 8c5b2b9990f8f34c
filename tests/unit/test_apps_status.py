"""`status` of an app on a server's shared HAProxy (fleet/status_proxy.py): the shared
HAProxy's image, version and settings' owner, every app on it with its live slot and version,
the routes as HAProxy has them, in three round trips."""

from __future__ import annotations

import dataclasses

from slotswap.commands.runtime_api import RuntimeApiError
from slotswap.fleet import status_proxy
from tests.unit.shared_proxy_server import AT, BLOG, SHOP, Shared


def test_status_shows_the_shared_haproxy_its_apps_and_routes_in_three_round_trips() -> None:
    server = Shared([SHOP, BLOG])
    status = status_proxy.read_proxy_status(server, SHOP)
    assert len(server.commands) == 2 and len(server.api_lines) == 1  # + the runtime API
    assert server.api_lines[0] == (
        "show map /usr/local/etc/haproxy/current/hosts.map; show info; "
        "show map /usr/local/etc/haproxy/current/wildcards.map; show stat")
    assert (status.image, status.version) == ("haproxy:2.8", "2.8.5")
    assert [app.describe() for app in status.apps] == [
        "shop         present, live web1, serving v1",
        "blog         present, live web2, serving b7"]
    lines = status.lines()
    assert lines[0] == ("shared HAProxy slotswap-proxy  haproxy:2.8 (HAProxy 2.8.5), settings: "
                        "the kit's defaults")
    assert lines[-3:] == ["    route shop.test -> shop", "    route *.example.com -> blog",
                          "    route other names -> 404"]
    document = status.document()
    assert document["routes"] == [{"name": "shop.test", "app": "shop"},
                                  {"name": "*.example.com", "app": "blog"}]
    assert document["other_names"] == "404" and document["error"] is None


def test_status_names_the_owner_a_leaving_app_and_the_default_app() -> None:
    server = Shared([SHOP, BLOG])
    server.settings = dataclasses.replace(server.settings, owner="shop")
    server.registrations[1] = dataclasses.replace(server.registrations[1], state="leaving")
    server.registrations[0] = dataclasses.replace(server.registrations[0], default=True)
    status = status_proxy.read_proxy_status(server, SHOP)
    assert status.settings_from() == f"settings from shop's inventory (alice@laptop, {AT})"
    assert [app.describe() for app in status.apps][1] == "blog         leaving"
    assert status.other_names == "shop"
    assert server.api_lines[0].endswith("wildcards.map; show stat")


def test_a_registered_app_the_running_generation_lacks_leaves_the_others_readable() -> None:
    # Its `up` was cut after its registration, before the reload: the next `up` puts it in.
    server = Shared([SHOP, BLOG])
    del server.lives["blog"]
    status = status_proxy.read_proxy_status(server, SHOP)
    assert [app.describe() for app in status.apps] == [
        "shop         present, live web1, serving v1",
        "blog         present, not in the running HAProxy (its next up puts it in)"]
    assert status.error == ""


def test_status_says_what_haproxy_could_not_tell() -> None:
    server = Shared([SHOP, BLOG])
    server.api["show map"] = RuntimeApiError("s1: runtime API: no socket")
    status = status_proxy.read_proxy_status(server, SHOP)
    assert status.version == "?" and status.routes == [] and status.error
    assert {app.live for app in status.apps} == {"?"}


def test_the_json_document_gets_a_proxy_object_only_with_haproxy_shared() -> None:
    from slotswap.cli.report import status_document
    from slotswap.fleet.status import ServerStatus

    today = ServerStatus("s1", "203.0.113.10", "web1", "v1", [])
    shared_one = dataclasses.replace(today, proxy=status_proxy.read_proxy_status(
        Shared([SHOP, BLOG]), SHOP))
    servers = status_document([today, shared_one], 0)["servers"]
    assert "proxy" not in servers[0]
    assert servers[1]["proxy"]["apps"][0] == {"app": "shop", "state": "present",
                                              "live": "web1", "version": "v1"}
    assert servers[1]["proxy"]["other_names"] == "404"


def test_an_app_is_live_where_its_slot_runs_and_takes_traffic_or_through_its_fallback() -> None:
    from slotswap.commands.runtime_api import ServerStat
    from slotswap.fleet.status_proxy import Container, serving_on_proxy

    def stat(name: str, status: str) -> ServerStat:
        return ServerStat(name, status, 0, "L7OK", "200", "", 0, "127.0.0.1:1")

    def slot(name: str, state: str, version: str) -> Container:
        return Container(f"shop-{name}", "img", state, "app", "shop", name, version)

    both = [slot("web1", "running", "v1"), slot("web2", "running", "v2")]
    assert serving_on_proxy({"web1": stat("web1", "UP"), "web2": stat("web2", "MAINT")},
                            both) == ("web1", "v1")
    # A line in rotation whose container is gone serves nothing.
    assert serving_on_proxy({"web1": stat("web1", "UP")},
                            [slot("web1", "exited", "v1")]) == ("none", "-")
    # A run cut in its window: the old slot serves through its fallback line alone.
    fallback = {"web1": stat("web1", "DRAIN"), "web2": stat("web2", "DOWN"),
                "web1-fallback": stat("web1-fallback", "UP")}
    assert serving_on_proxy(fallback, both) == ("web1 (through its fallback line)", "v1")
