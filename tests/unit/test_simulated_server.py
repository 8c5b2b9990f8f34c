"""The simulated server (simulated_server.py) speaks as the real ones do: each recorded state
of the sandbox's HAProxy and Docker, loaded into it, is rendered so that the kit's parsers
read the very values they read from the recording; and it behaves as they do: checks with
rise and fall on its clock, restarts, a frozen engine, the fault schedule, the lock scripts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.config.layout import STATE_NAME, cert_path_in_haproxy, haproxy_dir
from slotswap.https import install as tls
from slotswap.https.files import FILES_SOURCE, CertificateBundle
from slotswap.remote.server import CommandDeadlineError, ConnectionLostError
from slotswap.server import history, locking
from slotswap.server.haproxy_config import Login, render_config
from slotswap.server.locking import acquire, new_owner, read_owner, release
from slotswap.server.slots import read_slots
from testbed.private_ca import issue, make_ca
from tests.unit.fake_server import FIXTURES, make_inventory, recorded
from tests.unit.simulated_docker import Container, inspect_item
from tests.unit.simulated_haproxy import SimHaproxy, UnknownCommand
from tests.unit.simulated_server import Fault, SimClock, SimulatedServer

RECORDED_STATES = sorted(
    path.name.removeprefix("show_stat_").removesuffix(".csv")
    for path in FIXTURES.glob("show_stat_*.csv")
    if (FIXTURES / path.name.replace("show_stat_", "show_servers_state_")
        .replace(".csv", ".txt")).exists())
RECORDED_CONTAINERS = sorted(path.name for path in FIXTURES.glob("docker_inspect_*.json"))


def simulated(tmp_path: Path, **settings: object) -> SimulatedServer:
    inventory = make_inventory(tmp_path, **settings)
    server = SimulatedServer(inventory.hosts[0].name, inventory, SimClock(), tmp_path / "s",
                             config=render_config(inventory, Login(0, 0)))
    for tag in ("v1", "v2"):
        server.add_image(tag)
    return server


def run_slot(server: SimulatedServer, slot: str, tag: str) -> None:
    """A slot's container started and made live, as a deploy leaves it."""
    inventory = server.inventory
    port = inventory.slot_port(slot)
    server.execute(docker.run_app_slot(
        container=inventory.container_name(slot), image_ref=inventory.image_ref(tag),
        network=inventory.network, app=inventory.app, slot=slot, version=tag,
        app_port=inventory.app_port, stop_timeout=10,
        published=((port, inventory.app_port),)), None)
    server.runtime_api(f"set server webapp/{slot} state ready")


def test_the_recordings_are_all_read() -> None:
    assert len(RECORDED_STATES) == 11 and len(RECORDED_CONTAINERS) == 13


@pytest.mark.parametrize("state", RECORDED_STATES)
def test_each_recorded_haproxy_state_is_rendered_as_haproxy_does(
        tmp_path: Path, state: str) -> None:
    stat_text = recorded(f"show_stat_{state}.csv")
    state_text = recorded(f"show_servers_state_{state}.txt")
    backend = haproxy.parse_stat_rows(stat_text)[0]["pxname"]
    server = simulated(tmp_path, app="webapp")
    proxy = server.haproxy
    proxy.backend = backend
    proxy.load_recorded(stat_text, state_text, admin_from_stat=True)
    assert haproxy.parse_show_stat(proxy.show_stat()) == haproxy.parse_show_stat(stat_text)
    proxy.load_recorded(stat_text, state_text, admin_from_stat=False)
    assert (haproxy.parse_servers_state(proxy.show_servers_state())
            == haproxy.parse_servers_state(state_text))


def test_both_answers_in_one_line_split_as_the_recording_does(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_slot(server, "web2", "v2")
    answer = server.runtime_api(haproxy.command_show_stat_and_state("webapp"))
    stat, state = haproxy.split_stat_and_state(answer)
    recorded_stat, recorded_state = haproxy.split_stat_and_state(
        recorded("show_stat_and_servers_state_live_web2.txt"))
    assert stat.endswith("\n\n") and recorded_stat.endswith("\n\n")
    assert state.endswith(",") is recorded_state.endswith(",")
    assert set(haproxy.parse_show_stat(stat)) == {"web1", "web2", "web1-fallback",
                                                  "web2-fallback"}
    assert haproxy.parse_stat_rows(stat)[0].keys() == haproxy.parse_stat_rows(
        recorded_stat)[0].keys()


@pytest.mark.parametrize("name", RECORDED_CONTAINERS)
def test_each_recorded_container_is_inspected_as_docker_does(name: str) -> None:
    items = json.loads((FIXTURES / name).read_text())
    for item, info in zip(items, docker.parse_inspect((FIXTURES / name).read_text()).values(),
                          strict=True):
        started = info.started_ns / 1e9
        container = Container(info.name, info.image, info.image_id, info.labels,
                              restart=item["HostConfig"]["RestartPolicy"]["Name"],
                              running=info.running, exit_code=info.exit_code,
                              started_at=started, published=info.loopback_ports)
        rendered = inspect_item(container, lambda monotonic: monotonic)
        if info.status not in ("running", "exited"):
            continue  # created, restarting: states the simulator does not make
        again = docker.parse_inspect(json.dumps([rendered]))[info.name]
        assert abs(again.started_ns - info.started_ns) < 1000
        assert again.__dict__ | {"started_at": "", "addresses": {}, "binds": {}} == \
            info.__dict__ | {"started_at": "", "addresses": {}, "binds": {}}
        assert rendered.keys() == item.keys()


def test_a_slot_passes_its_checks_rise_times_after_health_down(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_slot(server, "web1", "v1")
    server.runtime_api("set server webapp/web1 state drain; set server webapp/web1 health down")
    stat = haproxy.parse_show_stat(server.runtime_api("show stat webapp 4 -1"))["web1"]
    assert stat.status == "DOWN"
    server.clock.advance(0.15)  # one check at downinter 100ms: DOWN 1/2
    assert haproxy.parse_show_stat(server.haproxy.show_stat())["web1"].status == "DOWN 1/2"
    server.clock.advance(0.1)
    stat = haproxy.parse_show_stat(server.haproxy.show_stat())["web1"]
    assert (stat.status, stat.check_passed) == ("DRAIN", True)


def test_a_stopped_slot_falls_after_fall_checks_and_counts_them(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_slot(server, "web1", "v1")
    server.clock.advance(2)
    assert server.request().version == "v1"
    server.execute(docker.stop("webapp-web1", 10), None)
    started, seen = server.clock.now, ["UP"]
    while seen[-1] != "DOWN":
        server.clock.advance(0.01)
        stat = haproxy.parse_show_stat(server.haproxy.show_stat())["web1"]
        if stat.status != seen[-1]:
            seen.append(stat.status)
    # The first failed check within inter (500ms), two more at fastinter (100ms): fall 3.
    assert seen == ["UP", "UP 2/3", "UP 1/3", "DOWN"]
    assert server.clock.now - started < 0.75 and stat.check_failures == 3
    assert server.request() is None  # nothing else is in rotation: a 503


def test_an_haproxy_restart_comes_back_from_the_config_and_the_state_file(
        tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_slot(server, "web2", "v2")
    server.runtime_api("set server webapp/web1 state maint")
    server.restart_haproxy()
    lines = server.haproxy.lines
    assert [(n, line.admin_name) for n, line in lines.items()] == [
        ("web1", "READY"), ("web2", "READY"), ("web1-fallback", "MAINT"),
        ("web2-fallback", "MAINT")]
    server.runtime_api("set server webapp/web1 state maint")
    state = server.haproxy.show_servers_state()
    server.write_file(f"{haproxy_dir(server.inventory)}/{STATE_NAME}", state)
    server.restart_haproxy()
    assert server.haproxy.lines["web1"].admin_name == "MAINT"


def test_an_engine_restart_brings_back_what_was_running_with_a_policy(
        tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_slot(server, "web1", "v1")
    run_slot(server, "web2", "v2")
    server.execute(docker.stop("webapp-web1", 10), None)
    restarts = server.haproxy.restarts
    server.restart_engine()
    assert not server.containers["webapp-web1"].running
    assert server.containers["webapp-web2"].running
    assert server.haproxy.restarts == restarts + 1


def test_a_frozen_engine_meets_every_deadline_and_haproxy_still_answers(
        tmp_path: Path) -> None:
    server = simulated(tmp_path)
    server.faults = [Fault(1, "frozen_engine")]
    before = server.clock.now
    with pytest.raises(CommandDeadlineError):
        server.run(docker.inspect_containers("webapp-web1"), timeout=30)
    assert server.clock.now == before + 30
    assert "web1" in haproxy.parse_show_stat(server.runtime_api("show stat webapp 4 -1"))


def test_a_connection_lost_before_or_after_a_command(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    server.faults = [Fault(1, "lost_before"), Fault(2, "lost_after")]
    with pytest.raises(ConnectionLostError):
        server.runtime_api("set server webapp/web1 state maint")
    assert server.haproxy.lines["web1"].admin_name == "READY"  # never arrived
    with pytest.raises(ConnectionLostError):
        server.runtime_api("set server webapp/web1 state maint")
    assert server.haproxy.lines["web1"].admin_name == "MAINT"  # ran, its answer lost
    assert [(at, kind) for at, kind, _ in server.struck] == [(1, "lost_before"),
                                                              (2, "lost_after")]


def test_what_it_does_not_know_fails_loudly(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    with pytest.raises(UnknownCommand):
        server.run(["docker", "system", "prune"])
    with pytest.raises(UnknownCommand):
        server.runtime_api("shutdown sessions server webapp/web1")


def test_the_lock_scripts_run_for_real_and_a_lease_can_be_taken_over(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    owner = new_owner("deploy", "v2")
    assert acquire(server, server.inventory, owner).taken
    assert read_owner(server, server.inventory) == owner
    server.take_lease_over()
    assert read_owner(server, server.inventory) == server.other_owner
    release(server, server.inventory, owner)  # not ours any more: left alone
    assert read_owner(server, server.inventory) == server.other_owner


def test_the_kit_reads_its_slots_from_it(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_slot(server, "web1", "v1")
    server.clock.advance(1)
    views = read_slots(server, server.inventory)
    assert views["web1"].serving and views["web1"].version == "v1"
    assert not views["web2"].running


def test_the_fixed_scripts_answer_in_python_as_the_real_sh_does(tmp_path: Path) -> None:
    """The sweep runs the lock's and the history's scripts in Python (a process each would
    take minutes): each step of a lock's life answers as with the real `sh`."""
    inventory = make_inventory(tmp_path)
    ours, theirs = new_owner("deploy", "v2"), new_owner("deploy", "v3")

    def steps(server: SimulatedServer) -> list[tuple[str, int]]:
        lock = locking.lock_dir(inventory)
        commands = [
            (locking.read_lock_command(inventory), None),
            (locking.take_lock_command(inventory), json.dumps(ours.__dict__)),
            (locking.read_lock_command(inventory), None),
            (locking.take_lock_command(inventory), json.dumps(theirs.__dict__)),
            (locking.renew_lock_command(inventory, ours), None),
            (locking.renew_lock_command(inventory, theirs), None),
            (locking.release_lock_command(inventory, theirs), None),
            (locking.read_lock_command(inventory), None),
            ("age", None),
            (locking.take_lock_command(inventory), json.dumps(theirs.__dict__)),
            (locking.release_lock_command(inventory, theirs), None),
            (locking.read_lock_command(inventory), None),
            (history.append_command(inventory), '{"a": 1}\n'),
            (history.append_command(inventory), '{"b": 2}\n'),
            (history.append_command(inventory), '{"b": 2}\n'),  # sent again: written once
            (["cat", history.history_path(inventory)], None),
            (["cat", "/nowhere"], None),
            (["rm", "-f", "/etc/slotswap/webapp/web1.env"], None),
            # `up`'s files (slotswap.server.haproxy): folders, the map, the config kept.
            (["mkdir", "-p", "-m", "700", "/etc/slotswap/webapp/haproxy/admin"], None),
            (["chmod", "700", "/etc/slotswap/webapp/haproxy/admin"], None),
            (["mkdir", "-p", "/etc/slotswap/webapp/haproxy"], None),
            (["touch", "/etc/slotswap/webapp/haproxy/maintenance.map"], None),
            (["cp", "-f", "/etc/slotswap/webapp/haproxy/maintenance.map",
              "/etc/slotswap/webapp/haproxy/a"], None),
            (["mv", "-f", "/etc/slotswap/webapp/haproxy/a", "/etc/slotswap/webapp/haproxy/b"],
             None),
            (["cp", "-f", "/etc/slotswap/webapp/haproxy/a", "/etc/slotswap/webapp/haproxy/c"],
             None),
            (["cat", "/etc/slotswap/webapp/haproxy/b"], None),
            (["true"], None),
        ]
        answers = []
        for argv, stdin in commands:
            if argv == "age":
                server.files.set_mtime(lock, server.files.mtime(lock) - 500)
                continue
            result = server.execute(list(argv), stdin)
            answers.append((result.stdout, result.exit_code))
        return answers

    python, real = simulated(tmp_path / "python"), simulated(tmp_path / "real")
    real.real_shell = True
    ours_answers, real_answers = steps(python), steps(real)
    # The real `sh` reads its clock a moment later: a second or two may have passed
    # meanwhile, at any step that prints the lock's age.
    ages = [int(found[1]) for stdout, _ in (ours_answers[8], real_answers[8])
            for found in [re.match(r"stale (\d+)", stdout)] if found]
    assert len(ages) == 2 and ages[0] == 500, ages
    ours_answers, real_answers = _ages_within(ours_answers, real_answers, slack=2)
    assert ours_answers == real_answers


def _ages_within(ours: list[tuple[str, int]], real: list[tuple[str, int]], slack: int
                 ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Both answer lists with each lock age (`lock|held|stale N`) put as `age`, after a check
    that the real shell's age is the simulated one's or up to `slack` seconds later."""
    pattern = re.compile(r"^(lock|held|stale) (\d+)", re.MULTILINE)
    for (ours_out, _), (real_out, _) in zip(ours, real, strict=True):
        pairs = list(zip(pattern.findall(ours_out), pattern.findall(real_out), strict=True))
        for (word, ours_age), (real_word, real_age) in pairs:
            assert word == real_word and 0 <= int(real_age) - int(ours_age) <= slack, pairs

    def blurred(answers: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return [(pattern.sub(r"\1 age", out), code) for out, code in answers]
    return blurred(ours), blurred(real)


def test_haproxy_in_its_container_runs_and_reloads_the_config_file_it_mounts(
        tmp_path: Path) -> None:
    """`docker run` of HAProxy's container (the server's network, its folders mounted, as
    inspect shows them), `haproxy -c` of a file, and a reload (HUP): new workers (a new Pid
    in `show info`) from the config on disk and the server-state file."""
    server = simulated(tmp_path)
    inventory = server.inventory
    image = inventory.haproxy.image
    server.images[image] = "sha256:" + "ab" * 32
    folder = haproxy_dir(inventory)
    new = render_config(make_inventory(tmp_path, healthcheck={"interval": 3}), Login(0, 0))
    assert new != server.haproxy.config
    server.files.write(f"{folder}/haproxy.cfg", server.haproxy.config)
    server.files.write(f"{folder}/bad.cfg", "global\n")
    check = [docker.check_haproxy_config(image_ref=image, config_dir=folder, filename=name)
             for name in ("haproxy.cfg", "bad.cfg")]
    assert [server.execute(argv, None).exit_code for argv in check] == [0, 1]
    assert server.execute(docker.run_haproxy(
        container=inventory.haproxy_container, image_ref=image, app=inventory.app,
        config_dir=folder, admin_dir=f"{folder}/admin", labels={"k": "v"}), None).ok
    found = docker.parse_inspect(server.execute(
        docker.inspect_containers(inventory.haproxy_container), None).stdout)
    container = found[inventory.haproxy_container]
    assert container.addresses.keys() == {"host"} and container.labels["k"] == "v"
    assert container.binds["/usr/local/etc/haproxy"] == folder
    pid = haproxy.parse_info(server.runtime_api("show info"))["Pid"]
    server.files.write(f"{folder}/haproxy.cfg", new)
    assert server.execute(docker.signal_container(inventory.haproxy_container, "HUP"),
                          None).ok
    assert server.haproxy.config == new
    assert haproxy.parse_info(server.runtime_api("show info"))["Pid"] != pid


def test_a_new_haproxy_container_takes_the_admin_socket_and_the_old_one_soft_stops(
        tmp_path: Path) -> None:
    """The hand-over's commands (server/haproxy_handover.py): the new container's master
    answers on the admin socket (`show env` names its instance, `show stat` its open
    frontend); USR1 soft-stops the old one (no listener, exits once its connections end),
    `docker wait` sees it exit; the new one is renamed.
    With no HAProxy container running, no request gets an answer, and the socket none."""
    server = simulated(tmp_path)
    inventory = server.inventory
    server.images[inventory.haproxy.image] = "sha256:" + "ab" * 32
    folder = haproxy_dir(inventory)
    server.files.write(f"{folder}/haproxy.cfg", server.haproxy.config)
    name, temporary = inventory.haproxy_container, f"{inventory.haproxy_container}-next"
    for container, instance in ((name, None), (temporary, "abc")):
        assert server.execute(docker.run_haproxy(
            container=container, image_ref=inventory.haproxy.image, app=inventory.app,
            config_dir=folder, admin_dir=f"{folder}/admin", instance=instance), None).ok
    assert server.runtime_api(f"show env {docker.HAPROXY_INSTANCE_VARIABLE}") \
        == f"{docker.HAPROXY_INSTANCE_VARIABLE}=abc\n"
    assert "FRONTEND" in server.runtime_api("show stat")
    assert server.execute(docker.no_restart(name), None).ok
    assert server.execute(docker.signal_container(name, "USR1"), None).ok
    assert server.containers[name].running  # it finishes its open connections first
    assert server.execute(docker.wait_exit(name, 2), None).stdout == "0\n"
    assert server.execute(docker.remove(name), None).ok
    assert server.execute(docker.rename(temporary, name), None).ok
    assert [(c.name, c.running) for c in server.haproxy_containers()] == [(name, True)]
    assert server.haproxy_listens()
    assert server.execute(docker.stop(name, 10), None).ok
    assert not server.haproxy_listens() and server.request() is None
    with pytest.raises(haproxy.RuntimeApiError):
        server.runtime_api("show info")


def test_its_certificate_is_shown_and_replaced_as_haproxy_does() -> None:
    """`show ssl cert` in the recording's lines (haproxy-2.6-show-ssl-cert.txt), what the
    kit reads of it the bundle's own; `set` stages, `commit` swaps, a restart loses the
    transaction (HAProxy 2.6's answers)."""
    ca = make_ca()
    old, new = (CertificateBundle(*issue(ca, ["s1.fleet.test"]), FILES_SOURCE) for _ in "ab")
    proxy = SimHaproxy("webapp", render_config(make_inventory(), Login(0, 0)), SimClock(),
                       lambda port: (False, ""))
    proxy.cert, path = old.haproxy_pem(), cert_path_in_haproxy()
    shown = proxy.answer(f"show ssl cert {path}")
    keys = [line.partition(": ")[0] for line in shown.splitlines()]
    assert keys == [line.partition(": ")[0] for line in
                    recorded("haproxy-2.6-show-ssl-cert.txt").splitlines()]
    assert tls.parse_show_ssl_cert(shown).serial == old.info().serial
    assert proxy.answer(f"set ssl cert {path} <<\n{new.haproxy_pem()}") == \
        f"Transaction created for certificate {path}!\n"
    proxy.start(None, cert=old.haproxy_pem())  # a restart: the transaction is gone
    answer = proxy.answer(f"commit ssl cert {path}")
    with pytest.raises(haproxy.RuntimeApiError):
        haproxy.raise_for_api_error(f"commit ssl cert {path}", answer)
    proxy.answer(f"set ssl cert {path} <<\n{new.haproxy_pem()}")
    assert proxy.answer(f"commit ssl cert {path}") == f"Committing {path}.\nSuccess!\n"
    assert tls.parse_show_ssl_cert(proxy.answer(f"show ssl cert {path}")).serial == \
        new.info().serial
