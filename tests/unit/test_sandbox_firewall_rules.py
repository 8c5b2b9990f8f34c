"""testbed.sandbox's rule for its bridge in FORWARD, and what it says when another firewall
drops the bridge's traffic all the same."""

from __future__ import annotations

import json

from testbed import sandbox


def test_the_rule_accepts_the_bridges_own_traffic_and_carries_the_sandboxs_mark() -> None:
    assert sandbox.forward_rule("ssbr6") == [
        "-i", "ssbr6", "-o", "ssbr6", "-m", "comment", "--comment", sandbox.FORWARD_MARK,
        "-j", "ACCEPT"]


def chain(family: str, table: str, name: str, **fields: object) -> dict[str, object]:
    return {"chain": {"family": family, "table": table, "name": name, "handle": 1, **fields}}


def test_forward_chains_that_drop_are_named_others_are_not() -> None:
    listed = json.dumps({"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        # iptables-nft's, with Docker's policy
        chain("ip", "filter", "FORWARD", type="filter", hook="forward", prio=0, policy="drop"),
        chain("ip", "filter", "DOCKER-USER"),  # a regular chain: no hook, no policy
        # Debian's /etc/nftables.conf made strict by its operator
        chain("inet", "filter", "input", type="filter", hook="input", prio=0, policy="drop"),
        chain("inet", "filter", "forward", type="filter", hook="forward", prio=0,
              policy="drop"),
        chain("inet", "docker-bridges", "filter-FORWARD", type="filter", hook="forward",
              prio=0, policy="accept"),
    ]})
    assert sandbox.drop_forward_chains(listed) == ["ip filter FORWARD",
                                                   "inet filter forward"]


def test_nothing_named_from_an_empty_or_unreadable_listing() -> None:
    assert sandbox.drop_forward_chains('{"nftables": [{"metainfo": {}}]}') == []
    assert sandbox.drop_forward_chains("") == []
    assert sandbox.drop_forward_chains("[1, 2]") == []
