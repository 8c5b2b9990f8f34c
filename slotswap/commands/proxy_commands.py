"""Docker command lines of a server's shared HAProxy (several apps on one server,
docs/apps-design.md, decision 1): its container, and the check of a generation before it goes
in. Pure.

The container mounts the shared HAProxy's folder read-only, as an app's HAProxy mounts its
own, and loads the generation `current` links to: `-f current/haproxy.cfg -f
current/backends`. A reload (HUP to the master) runs the same argv again, so it reads the
folder `current` links to then.

A generation is checked in a throwaway container that sees it at `current`, with what it
refers to beside it (every app's files, the Lua service, the fallback certificate), each
mounted on its own. Not the whole folder with the generation mounted over `current` inside
it: where there is no `current` yet (a server's first generation), runc cannot make that
mount point in a read-only mount and the check fails (`mkdir ... read-only file system`,
exit 125; seen with Docker on the sandbox). `--mount`, not `--volume`: a source that does not
exist is refused instead of being made an empty folder on the server.
"""

from __future__ import annotations

from slotswap.commands.docker import HAPROXY_MASTER_USER, LABEL_APP, LABEL_ROLE, haproxy_run_head
from slotswap.config.layout import (
    CURRENT_LINK,
    FALLBACK_CERT_NAME,
    HAPROXY_ADMIN_DIR_INSIDE,
    HAPROXY_CONFIG_DIR_INSIDE,
    LABEL_SHARED,
    PROXY_APPS_FOLDER,
    PROXY_CONTAINER,
    PROXY_LABELS,
    SERVICE_NAME,
    proxy_config_args_in_haproxy,
)

# What a generation refers to outside itself, in the shared HAProxy's folder: the apps'
# files (fragments' state files, maintenance maps, certificates), the Lua service and the
# fallback certificate (the crt-list's first line while no default app has HTTPS).
_BESIDE_A_GENERATION = (PROXY_APPS_FOLDER, SERVICE_NAME, FALLBACK_CERT_NAME)


def bind_mount(source: str, target: str, *, readonly: bool = True) -> list[str]:
    """`--mount type=bind,...`: refused by Docker when `source` does not exist. A path with
    a comma or a quote would be read as more options: refused here."""
    for path in (source, target):
        if not path.startswith("/") or any(char in path for char in ',"\'\n'):
            raise ValueError(f"not a path a bind mount can name: {path!r}")
    return ["--mount", f"type=bind,source={source},target={target}"
            + (",readonly" if readonly else "")]


def run_shared_proxy(*, image_ref: str, haproxy_dir: str, admin_dir: str,
                     container: str = PROXY_CONTAINER, labels: dict[str, str] | None = None,
                     instance: str | None = None) -> list[str]:
    """The shared HAProxy's container, on the server's network as an app's own HAProxy is
    (docker.run_haproxy): labels of the HAProxy role, marked shared, and no `slotswap.app`,
    so no app's `down` removes it; `container` is another name only while it takes over from
    a running one (a hand-over)."""
    return [
        *haproxy_run_head(container, {**dict(PROXY_LABELS), **(labels or {})}, instance),
        *bind_mount(haproxy_dir, HAPROXY_CONFIG_DIR_INSIDE),
        *bind_mount(admin_dir, HAPROXY_ADMIN_DIR_INSIDE, readonly=False),
        image_ref,
        *proxy_config_args_in_haproxy(),
    ]


def check_generation(*, image_ref: str, haproxy_dir: str, generation: str) -> list[str]:
    """HAProxy's own check (`-c`) of the generation folder `generation` (in `haproxy_dir`),
    seen at `current` as the running HAProxy will see it once `current` links to it, with
    the image and user that will run it (the master reads the 0600 certificates). Every
    file it refers to beside it must exist (the fallback certificate included): the caller
    writes them first."""
    mounts = bind_mount(f"{haproxy_dir}/{generation}",
                        f"{HAPROXY_CONFIG_DIR_INSIDE}/{CURRENT_LINK}")
    for name in _BESIDE_A_GENERATION:
        mounts += bind_mount(f"{haproxy_dir}/{name}", f"{HAPROXY_CONFIG_DIR_INSIDE}/{name}")
    return ["docker", "run", "--rm", "--network", "none", "--user", HAPROXY_MASTER_USER,
            *mounts, image_ref, "-c", *proxy_config_args_in_haproxy()]


def list_haproxies() -> list[str]:
    """Every HAProxy container the kit made on the server, as `<app> <shared>` lines: an
    app's own (`shop `) or the shared one (` 1`, no app)."""
    return ["docker", "ps", "--all", "--filter", f"label={LABEL_ROLE}=haproxy", "--format",
            f'{{{{.Label "{LABEL_APP}"}}}} {{{{.Label "{LABEL_SHARED}"}}}}']
