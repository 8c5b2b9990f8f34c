"""The shared HAProxy handed over to a new image (server/proxy_handover.py) on the simulated
server of two apps (simulated_apps.AppsServer), whose `slotswap-proxy` container runs the
generation `current` names: the new container loads each app's saved state, so every line of
both apps is as it was and both apps answer from the same containers; the steps in today's
order (states saved, `current` switched, the new one started with its token, the old one told
to stop only once the new one answers); a new one that does not start leaves the old one
serving, `current` back; a hand-over a cut run left is ended as today's rules say. And the
dry run's plan of it (fleet/dry_run_handover.py)."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.config.layout import (
    HAPROXY_ADMIN_DIR_INSIDE,
    HAPROXY_CONFIG_DIR_INSIDE,
    PROXY_CONTAINER,
    PROXY_LABELS,
    ProxyError,
    current_link,
    next_container,
    proxy_admin_dir,
    proxy_haproxy_dir,
    proxy_running_path,
)
from slotswap.fleet.dry_run import ServerPlan
from slotswap.fleet.dry_run_handover import hand_over_steps, interrupted_steps
from slotswap.remote.server import CommandResult
from slotswap.server.lock_sets import LOCK_MARK, TAKE_ALL_SCRIPT
from slotswap.server.locking import new_owner
from slotswap.server.proxy_assembly import Generation
from slotswap.server.proxy_down import running_image
from slotswap.server.proxy_generation import ProxyState, read_state, write_and_check
from slotswap.server.proxy_handover import (
    NEXT_PROXY,
    drain_seconds,
    end_interrupted_hand_over,
    hand_over,
    hand_over_lease,
    image_changes,
    put_in,
)
from slotswap.server.proxy_locks import SHARED_LOCK_LEASE
from slotswap.server.proxy_registry import Registration
from slotswap.server.slots import read_slots
from tests.unit.fake_server import FakeServer, make_inventory
from tests.unit.simulated_apps import AppsServer, registration
from tests.unit.simulated_docker import Container

OLD_IMAGE, NEW_IMAGE = "haproxy:2.8", "haproxy:3.0"


class HandOverApps(AppsServer):
    """AppsServer whose shared HAProxy runs in its container `slotswap-proxy` (OLD_IMAGE), as
    the shared `up` leaves it, and whose server also answers the shared change's commands:
    `current` switched (proxy_files.switch_command), `readlink`, `test -d`, the generations
    pruned (nothing removed here), `--mount` binds, several locks taken at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        server = self.server
        for image in (OLD_IMAGE, NEW_IMAGE):
            server.images[image] = f"sha256:{abs(hash(image)):064x}"[:71]
        server.serial += 1
        old = Container(PROXY_CONTAINER, OLD_IMAGE, server.images[OLD_IMAGE],
                        dict(PROXY_LABELS), restart="unless-stopped", network="host",
                        serial=server.serial, binds={
                            HAPROXY_CONFIG_DIR_INSIDE: self.folder,
                            HAPROXY_ADMIN_DIR_INSIDE: proxy_admin_dir(server.inventory)})
        server.containers[old.name] = old
        server.admin_owner = old.serial
        server.files.write(proxy_running_path(server.inventory), self.generation.sha12 + "\n")
        self.known = server.execute_known
        server.execute_known = self.execute_known  # type: ignore[method-assign]

    def execute_known(self, argv: list[str], stdin: str | None) -> CommandResult:
        files = self.server.files
        if argv[:2] == ["sh", "-c"] and argv[2].startswith("cd ") and "ln -sfn" in argv[2]:
            folder = shlex.split(argv[2])[1]
            for target, link in re.findall(r"ln -sfn (\S+) (\S+)", argv[2]):
                files.symlink(shlex.split(target)[0],
                              f"{folder}/{'current' if link.endswith('.tmp') else link}")
            return CommandResult("", "", 0)
        if argv[:2] == ["sh", "-c"] and "for name in gen-" in argv[2]:
            return CommandResult("", "", 0)  # the generations pruned: nothing to see here
        if argv[:2] == ["sh", "-c"] and argv[2] == TAKE_ALL_SCRIPT:
            answer, lease, pairs = "", argv[7], argv[8:]
            for state, lock in zip(pairs[::2], pairs[1::2], strict=True):
                files.mkdir(state, parents=True, exist_ok=True)
                assert self.server.take_lock(lock, lease, stdin or "")
                answer += f"{LOCK_MARK} {lock}\ntaken\n"
            return CommandResult(answer, "", 0)
        if argv[:1] == ["readlink"]:
            target = files.links.get(argv[1])
            return CommandResult(f"{target}\n", "", 0) if target else CommandResult("", "", 1)
        if argv[:2] == ["test", "-d"]:
            return CommandResult("", "", 0 if files.is_dir(argv[2]) else 1)
        if argv[:2] == ["docker", "run"] and "--mount" in argv:
            volumes = []
            for index, word in enumerate(argv):
                if argv[index - 1] == "--mount":
                    spec = dict(item.partition("=")[::2] for item in word.split(","))
                    volumes.append(["--volume", f"{spec['source']}:{spec['target']}"])
            rest = [word for index, word in enumerate(argv)
                    if word != "--mount" and argv[index - 1] != "--mount"]
            argv = [*rest[:2], *(word for pair in volumes for word in pair), *rest[2:]]
        return self.known(argv, stdin)

    # -- what is seen ----------------------------------------------------------------------
    def lines(self) -> list[tuple[str, str, str]]:
        """Every app's lines as HAProxy has them now (backend, line, status)."""
        return [(row["pxname"], row["svname"], row["status"].split()[0])
                for row in haproxy.parse_stat_rows(self.api("show stat"))
                if row["pxname"] in self.inventories and row["svname"] != "BACKEND"]

    def proxies(self) -> list[tuple[str, str, bool]]:
        return sorted((c.name, c.image, c.running) for c in self.server.haproxy_containers())

    def served(self) -> dict[str, str | None]:
        """The version each app's name gets."""
        return {app: (answer.container.version if answer.container else None)
                for app in self.inventories
                for answer in [self.request(f"{app}.test")]}

    def everyone(self) -> list[Registration]:
        return [registration(inventory) for inventory in self.inventories.values()]


@pytest.fixture
def apps(tmp_path: Path) -> HandOverApps:
    return HandOverApps(tmp_path)


def test_the_new_image_takes_over_with_every_apps_lines_as_they_were(
        apps: HandOverApps) -> None:
    server, inventory = apps.server, apps.server.inventory
    lines, served = apps.lines(), apps.served()
    assert served == {"a": "v1", "b": "v1"}
    state = read_state(server, inventory)
    assert image_changes(state, NEW_IMAGE) and not image_changes(state, OLD_IMAGE)
    said: list[str] = []
    done = put_in(server, inventory, said.append, apps.generation, NEW_IMAGE, ["a", "b"],
                  state, drain_seconds(apps.everyone()))
    assert done == f"shared HAProxy replaced ({OLD_IMAGE} -> {NEW_IMAGE})"
    assert apps.proxies() == [(PROXY_CONTAINER, NEW_IMAGE, True)]
    assert server.admin_container().image == NEW_IMAGE  # the socket is the new one's
    assert apps.lines() == lines and apps.served() == served
    # A deploy of either app finds its slots as they were.
    for app in ("a", "b"):
        views = read_slots(server, apps.inventories[app])
        assert [view.slot for view in views.values() if view.serving] == ["web1"]
    steps = [call for call in server.log
             if call.startswith(("show servers state", "sh -c 'cd", "docker"))
             and "inspect" not in call]
    assert steps[:3] == ["show servers state a", "show servers state b",
                         next(s for s in steps if s.startswith("sh -c 'cd"))]
    tail = [call.split()[:4] for part in steps[3:] for call in part.split(" && ")
            if call.startswith("docker")]
    assert tail == [["docker", "rm", "--force", NEXT_PROXY],
                    ["docker", "run", "--detach", "--name"],
                    ["docker", "update", "--restart", "no"],
                    ["docker", "kill", "--signal", "USR1"],
                    ["docker", "rm", "--force", PROXY_CONTAINER],
                    ["docker", "rename", NEXT_PROXY, PROXY_CONTAINER]]
    assert any(call.startswith("timeout 2 docker wait slotswap-proxy") for call in server.log)
    assert any("--env" in call and "SLOTSWAP_HAPROXY_INSTANCE=" in call
               for call in server.log if call.startswith("docker run"))
    assert server.read_local(proxy_running_path(inventory)) == apps.generation.sha12 + "\n"
    assert any("soft stop of slotswap-proxy" in line and "up to 2s" in line for line in said)


def test_a_new_image_that_does_not_start_leaves_the_old_one_serving_with_current_back(
        apps: HandOverApps) -> None:
    server, inventory = apps.server, apps.server.inventory
    del server.images[NEW_IMAGE]  # `docker run` fails: no such image
    lines, served = apps.lines(), apps.served()
    only_a = apps.assemble(("a",))
    apps.switch(only_a)  # written beside `current`, which the test points back
    server.files.symlink(apps.generation.name, current_link(inventory))
    state = read_state(server, inventory)
    with pytest.raises(ProxyError) as raised:
        hand_over(server, inventory, lambda line: None, only_a, NEW_IMAGE, ["a", "b"], state, 2)
    assert str(raised.value).startswith(
        f"203.0.113.10: the shared HAProxy's new image ({NEW_IMAGE}) did not take over (")
    assert str(raised.value).endswith(f"{PROXY_CONTAINER} keeps serving with its image "
                                      f"{OLD_IMAGE}")
    assert apps.proxies() == [(PROXY_CONTAINER, OLD_IMAGE, True)]
    assert server.files.links[current_link(inventory)] == apps.generation.name
    assert apps.lines() == lines and apps.served() == served  # reloaded: b still there
    assert not [call for call in server.log if "USR1 slotswap-proxy" in call.split("&&")[-1]
                and not call.endswith("slotswap-proxy-next")]
    assert any("USR2 slotswap-proxy" in call for call in server.log)


def start_next(apps: HandOverApps, *, told_to_stop: bool, old_there: bool = True) -> None:
    """A hand-over cut short: the new container started (and answering), the old one told
    to stop or not, or already gone."""
    server = apps.server
    assert server.execute(docker.run_haproxy(
        container=NEXT_PROXY, image_ref=NEW_IMAGE, app="x", config_dir=apps.folder,
        admin_dir=proxy_admin_dir(server.inventory), instance="cut"), None).ok
    server.containers[NEXT_PROXY].labels = dict(PROXY_LABELS)
    if told_to_stop:
        assert server.execute(docker.no_restart(PROXY_CONTAINER), None).ok
    if not old_there:
        del server.containers[PROXY_CONTAINER]


@pytest.mark.parametrize(("told_to_stop", "old_there", "image"), [
    (True, True, NEW_IMAGE), (False, True, OLD_IMAGE), (False, False, NEW_IMAGE)])
def test_a_hand_over_a_cut_run_left_is_ended_as_today(apps: HandOverApps, told_to_stop: bool,
                                                      old_there: bool, image: str) -> None:
    server, inventory = apps.server, apps.server.inventory
    lines = apps.lines()
    start_next(apps, told_to_stop=told_to_stop, old_there=old_there)
    # Meanwhile a deploy or status of either app refuses the server.
    assert next_container(apps.inventories["b"]) == NEXT_PROXY
    with pytest.raises(haproxy.RuntimeApiError, match="slotswap-proxy-next is left from an "
                                                      "HAProxy upgrade that was cut short"):
        read_slots(server, apps.inventories["b"])
    said: list[str] = []
    assert end_interrupted_hand_over(server, inventory, said.append, new_owner("up"),
                                     apps.everyone())
    assert apps.proxies() == [(PROXY_CONTAINER, image, True)]
    assert apps.lines() == lines
    assert set(read_slots(server, apps.inventories["b"])) == {"web1", "web2"}
    # Every other app's lock was held meanwhile, and released.
    assert any("lock" in call and "b/lock" in call for call in server.log)
    assert not server.files.is_dir(f"{apps.inventories['b'].state_dir}/lock")
    assert not end_interrupted_hand_over(server, inventory, said.append, new_owner("up"),
                                         apps.everyone())


def test_the_dry_run_plans_the_hand_over_and_the_end_of_a_cut_one(apps: HandOverApps) -> None:
    server, inventory = apps.server, apps.server.inventory
    plan = ServerPlan(server.name, server.host.address)
    hand_over_steps(plan, inventory, NEW_IMAGE, ["a", "b"], apps.generation.name,
                    apps.generation.name, 2)
    text = "\n".join(plan.steps)
    assert plan.summary == f"; a hand-over to a new container of {NEW_IMAGE}"
    assert text.index("show servers state a; show servers state b") < text.index(
        "--name slotswap-proxy-next") < text.index("USR1 slotswap-proxy") < text.index(
        "docker rename slotswap-proxy-next slotswap-proxy")
    assert f"source={proxy_haproxy_dir(inventory)}" in text
    assert not interrupted_steps(ServerPlan(server.name, ""), server, 2)
    start_next(apps, told_to_stop=True)
    cut = ServerPlan(server.name, "")
    assert interrupted_steps(cut, server, 2)
    assert "the interrupted hand-over is finished" in cut.steps[0]
    assert cut.steps[-1] == "$ docker rm --force slotswap-proxy && docker rename " \
                            "slotswap-proxy-next slotswap-proxy"


def test_the_soft_stop_waits_for_the_longest_drain_of_the_present_apps(
        apps: HandOverApps) -> None:
    a, b = apps.everyone()
    long = dataclasses.replace(b, drain=30.5)
    assert drain_seconds([a, long]) == 31
    assert drain_seconds([a, dataclasses.replace(long, state="leaving")]) == 2
    assert drain_seconds([]) == 1
    inventory = apps.server.inventory
    assert hand_over_lease(inventory, [a, long]) == SHARED_LOCK_LEASE + 31


def test_a_generation_there_already_is_checked_again_by_the_new_image(tmp_path: Path) -> None:
    inventory = make_inventory(tmp_path, haproxy={"shared": True}, names=["shop.test"])
    generation = Generation({"haproxy.cfg": "global\n"}, "0123456789ab")
    server = FakeServer(inventory=inventory)  # `test -d` of its folder: there
    write_and_check(server, inventory, generation, NEW_IMAGE, "nothing was changed")
    assert not [argv for argv in server.commands if argv[:2] == ["docker", "run"]]
    write_and_check(server, inventory, generation, NEW_IMAGE, "nothing was changed",
                    named_too=True)
    check = next(argv for argv in server.commands if argv[:2] == ["docker", "run"])
    assert NEW_IMAGE in check and ("type=bind,source=/etc/slotswap/_proxy/haproxy/"
                                   "gen-0123456789ab,target=/usr/local/etc/haproxy/current,"
                                   "readonly") in check
    assert not [argv for argv in server.commands if argv[:1] in (["mv"], ["rm"])]


def test_a_down_checks_with_the_image_that_runs_and_never_changes_it(
        apps: HandOverApps) -> None:
    """The settings may name an image a failed hand-over did not bring: the down reloads the
    container that runs, and its image checks the generation."""
    state = read_state(apps.server, apps.server.inventory)
    assert running_image(state, NEW_IMAGE) == OLD_IMAGE
    assert running_image(ProxyState(None, None, None), NEW_IMAGE) == NEW_IMAGE


def test_a_retry_that_fails_puts_current_back_at_what_the_old_one_runs(
        apps: HandOverApps) -> None:
    """A run cut once it switched `current` to the new generation; the next `up` tries the
    hand-over again and the new image fails: `current` goes back to the generation the old
    HAProxy was seen running (`.running`), never left at the one only the new image checked."""
    server, inventory = apps.server, apps.server.inventory
    del server.images[NEW_IMAGE]
    ran = apps.generation.name
    only_a = apps.assemble(("a",))
    apps.switch(only_a)  # `current` names the new generation, as the cut run left it
    state = read_state(server, inventory)
    assert state.current == only_a.name and state.running == ran
    with pytest.raises(ProxyError):
        hand_over(server, inventory, lambda line: None, only_a, NEW_IMAGE, ["a", "b"], state, 2)
    assert server.files.links[current_link(inventory)] == ran
