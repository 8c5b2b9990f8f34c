"""A generation of a server's shared HAProxy put in (several apps on one server,
docs/apps-design.md, decision 1): the shared container found and judged (this login's, or
refused), the files a generation refers to made, the generation written and checked by
HAProxy under a partial name before it takes its own, then run: by a new container, or by a
reload once each running backend's state is saved in its own file, `current` going back to
the generation that ran when the new one does not start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.proxy_commands import check_generation, run_shared_proxy
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    GENERATION_PREFIX,
    HAPROXY_CONFIG_DIR_INSIDE,
    PROXY_CONTAINER,
    ProxyError,
    app_files,
    fallback_cert_path,
    previous_link,
    proxy_admin_dir,
    proxy_haproxy_dir,
    proxy_running_path,
    proxy_service_path,
)
from slotswap.https.files import placeholder
from slotswap.remote.protocol import ServerLike
from slotswap.server import maintenance
from slotswap.server.haproxy import wait_for_runtime_api
from slotswap.server.haproxy_handover import wait_for_new_worker
from slotswap.server.proxy_assembly import Generation
from slotswap.server.proxy_files import (
    name_generation_command,
    partial_name,
    prune_generations_command,
    read_current,
    read_link,
    switch_command,
    write_partial_generation,
)


@dataclass(frozen=True)
class ProxyState:
    """The shared HAProxy on a server as found: its container (None: none), the generation
    `current` names and the one HAProxy was seen running (`.running`)."""

    container: docker.ContainerInfo | None
    current: str | None
    running: str | None

    @property
    def ran(self) -> str | None:
        """`current`, when it is the generation HAProxy was seen running: the one to go back
        to."""
        return self.current if self.running and self.current == self.running else None

    def runs(self, generation: Generation) -> bool:
        return (self.container is not None and self.container.running
                and self.current == generation.name and self.running == generation.name)


def shared_container(server: ServerLike, inventory: Inventory) -> docker.ContainerInfo | None:
    """The shared HAProxy's container; one that runs from another login's or remote_dir's
    folder is refused, in one line (its apps' registrations are not this login's)."""
    found = docker.parse_inspect(server.run(docker.inspect_containers(PROXY_CONTAINER),
                                            check=False).stdout).get(PROXY_CONTAINER)
    folder = proxy_haproxy_dir(inventory)
    if found is not None and found.binds.get(HAPROXY_CONFIG_DIR_INSIDE, folder) != folder:
        raise ProxyError(
            f"{server.name}'s shared HAProxy runs from "
            f"{found.binds[HAPROXY_CONFIG_DIR_INSIDE]}, not {folder}: every app on a server "
            "uses the same login and remote_dir; nothing was changed")
    return found


def read_state(server: ServerLike, inventory: Inventory) -> ProxyState:
    running = (server.read_file(proxy_running_path(inventory)) or "").strip()
    return ProxyState(shared_container(server, inventory), read_current(server, inventory),
                      f"{GENERATION_PREFIX}{running}" if running else None)


def prepare_folders(server: ServerLike, inventory: Inventory) -> None:
    """What a generation refers to, in place before HAProxy checks it: the app's folder and
    its maintenance map (kept as it is), the Lua service, the stand-in certificate, and the
    admin socket's folder (the login's alone)."""
    files = app_files(inventory, inventory.app)
    server.run_chain(["mkdir", "-p", files.folder],
                     ["mkdir", "-p", "-m", "700", proxy_admin_dir(inventory)],
                     ["chmod", "700", proxy_admin_dir(inventory)],
                     ["touch", files.maintenance_map])
    service = proxy_service_path(inventory)
    if server.read_file(service) != maintenance.shared_service_script():
        server.write_file(service, maintenance.shared_service_script())
    if not server.run(["test", "-f", fallback_cert_path(inventory)], check=False).ok:
        stand_in = placeholder(("invalid",), days=3650)
        server.write_private_file(fallback_cert_path(inventory),
                                  stand_in.chain_pem + stand_in.key_pem)


def write_and_check(server: ServerLike, inventory: Inventory, generation: Generation,
                    image: str, changed: str, *, named_too: bool = False) -> None:
    """The generation written under its partial name, checked by HAProxy (the image that
    will run it) and only then given its name: a folder named by its hash passed its check.
    `changed`: what a refusal says about this server. `named_too`: a folder there already
    (checked by the image that runs now) is checked again, by `image`."""
    written = write_partial_generation(server, inventory, generation)
    if not written and not named_too:
        return
    folder = partial_name(generation) if written else generation.name
    check = server.run(check_generation(image_ref=image,
                                        haproxy_dir=proxy_haproxy_dir(inventory),
                                        generation=folder), check=False)
    if check.ok:
        if written:
            server.run(name_generation_command(inventory, generation))
        return
    if written:
        server.run(["rm", "-rf", f"{proxy_haproxy_dir(inventory)}/{folder}"], check=False)
    said = (check.stdout + check.stderr).splitlines()
    alerts = [line.strip() for line in said if "ALERT" in line]
    if alerts:
        raise ProxyError(f"{server.name}: HAProxy refuses the shared config ({alerts[0]}); "
                         f"{changed}")
    detail = next((line.strip() for line in reversed(said) if line.strip()),
                  f"exit {check.exit_code}")
    raise ProxyError(f"{server.name}: the shared config could not be checked (`docker run` "
                     f"exited {check.exit_code}: {detail}); {changed}")


def apply_generation(server: ServerLike, inventory: Inventory, generation: Generation,
                     image: str, apps: Sequence[str], state: ProxyState) -> str:
    """The generation (written and checked) run, under every app's lock: by a new container
    where none runs, else by a reload once each running backend's state (`apps`) is saved;
    what was done."""
    name = PROXY_CONTAINER
    container = state.container
    if container is not None and container.running:
        save_backend_states(server, inventory, apps)
    # `previous`: only a generation that ran is one to go back to.
    server.run(switch_command(inventory, generation.name, state.ran))
    if container is None:
        server.run(run_shared_proxy(image_ref=image, haproxy_dir=proxy_haproxy_dir(inventory),
                                    admin_dir=proxy_admin_dir(inventory)))
        wait_for_runtime_api(server)
        done = "shared HAProxy started"
    elif not container.running:
        server.run(docker.start(name))
        wait_for_runtime_api(server)
        done = "shared HAProxy restarted"
    else:
        reload(server, inventory, state.ran)
        done = "shared HAProxy reloaded"
    record_running(server, inventory, generation, state)
    return done


def record_running(server: ServerLike, inventory: Inventory, generation: Generation,
                   state: ProxyState) -> None:
    """HAProxy seen running the generation (`.running`); the generations no link names nor
    the one that ran before (`state`) removed."""
    server.write_file(proxy_running_path(inventory),
                      generation.name.removeprefix(GENERATION_PREFIX) + "\n")
    kept = [generation.name, state.current, read_link(server, previous_link(inventory))]
    server.run(prune_generations_command(inventory, dict.fromkeys(filter(None, kept))),
               check=False)


def save_backend_states(server: ServerLike, inventory: Inventory, apps: Sequence[str]) -> None:
    """Each running backend's slot state in its own file, where a restarted HAProxy loads
    it. A backend the running generation does not have yet has none; any other failure
    stops the change before `current` moves (a reload would start that backend from an
    older file)."""
    for app in apps:
        try:
            state = server.runtime_api(haproxy.command_show_servers_state(app))
        except haproxy.RuntimeApiError as error:
            if "Can't find backend" in str(error):
                continue
            raise
        if "Can't find backend" in state:
            continue
        server.write_file(app_files(inventory, app).server_state, state.lstrip("\n"))


def reload(server: ServerLike, inventory: Inventory, ran: str | None) -> None:
    """HUP to the master: new workers with the generation `current` names now, the old ones
    finish their connections. One that does not start leaves the old workers serving, and
    `current` goes back to the generation they run."""
    before = haproxy.parse_info(server.runtime_api("show info")).get("Pid")
    server.run(docker.signal_container(PROXY_CONTAINER, "HUP"))
    if wait_for_new_worker(server, before):
        return
    if ran is not None:
        server.run(switch_command(inventory, ran, None), check=False)
    raise ProxyError(f"{server.name}: the shared HAProxy accepted the new config but did not "
                     "start with it; the old workers keep running"
                     + (" with the previous one, back in place" if ran else "")
                     + f"; see `docker logs {PROXY_CONTAINER}` on the server")
