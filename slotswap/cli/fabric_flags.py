"""Fabric's own command-line flags (`fab -H`, `-R`, `-i`, ...), as the kit's tasks meet them.

`fab` parses them before any task runs and puts them in the task's context. The kit works
on its inventory, not on Fabric's host list, so each flag is either honoured (it means what
a Fabric user expects) or refused with an error before anything is contacted; none is
silently ignored:

- honoured: `-i/--identity KEY` (the SSH key, instead of the inventory's ssh.identity; a
  file that is not a private key, e.g. `-i hosts.yaml`, is refused),
  `-t/--connect-timeout N` (instead of ssh.connect_timeout), `-e/--echo` and `--hide` (the
  local commands of `build`), and the listing, help, debug and config flags;
- refused: `-H/--hosts` (Fabric would run the whole task once per host: the tasks'
  own `--hosts=NAME,...` picks servers of the inventory), `-R/--dry` (the tasks' own
  `--dry-run` shows what would change), `-S/--ssh-config`, `-T/--command-timeout`,
  `-p/--pty`, `-w/--warn-only`, `--prompt-for-passphrase`, `--prompt-for-login-password`
  and `--prompt-for-sudo-password`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fabric import Connection
from invoke import Context

from slotswap.core.validation import InputError


@dataclass(frozen=True)
class ConnectOverrides:
    """What Fabric's flags change in how the servers are logged in to."""

    identity: Path | None = None
    connect_timeout: float | None = None

    @property
    def empty(self) -> bool:
        return self == ConnectOverrides()


def refused_flags(c: Context) -> list[str]:
    """One line per Fabric flag given that the kit does not honour, saying what to use."""
    problems = []
    if isinstance(c, Connection):
        problems.append("-H/--hosts runs a task once per host; the kit works on its inventory: "
                        "pick servers of it with the task's own --hosts=NAME[,NAME]")
    config = c.config
    run = config.get("run", {})
    if run.get("dry"):
        problems.append("-R/--dry would not stop the kit's remote steps: use the task's own "
                        "--dry-run")
    if run.get("pty"):
        problems.append("-p/--pty: the kit runs no command that needs a terminal")
    if run.get("warn"):
        problems.append("-w/--warn-only: the kit decides itself which failures stop a run")
    if config.get("timeouts", {}).get("command"):
        problems.append("-T/--command-timeout: every remote step has its own deadline "
                        "(the inventory's timeouts section)")
    if config.get("ssh_config_path") or getattr(config, "_runtime_ssh_path", None):
        problems.append("-S/--ssh-config: the kit reads ~/.ssh/config and /etc/ssh/ssh_config "
                        "(the inventory's ssh.config turns that off)")
    kwargs = config.get("connect_kwargs", {}) or {}
    if kwargs.get("passphrase"):
        problems.append("--prompt-for-passphrase: load the key into ssh-agent (ssh-add KEY); "
                        "agent keys are always tried")
    if kwargs.get("password"):
        problems.append("--prompt-for-login-password: the kit logs in with keys only")
    if config.get("sudo", {}).get("password"):
        problems.append("--prompt-for-sudo-password: the kit does not use sudo")
    return problems


def connect_overrides(c: Context) -> ConnectOverrides:
    """The honoured login flags: -i and -t."""
    kwargs = c.config.get("connect_kwargs", {}) or {}
    keys = kwargs.get("key_filename") or []
    keys = [keys] if isinstance(keys, str) else list(keys)
    if len(keys) > 1:
        raise InputError("-i/--identity was given more than once; give one key (ssh-agent "
                         "keys are always tried as well)")
    timeout = kwargs.get("timeout")
    return ConnectOverrides(
        identity=Path(keys[0]).expanduser().absolute() if keys else None,
        connect_timeout=float(timeout) if timeout else None,
    )


# The first line of every private key file paramiko reads (OpenSSH's own format, PEM, PKCS#8).
PRIVATE_KEY_START = b"-----BEGIN "
PRIVATE_KEY_LABEL = b"PRIVATE KEY-----"


def looks_like_private_key(head: bytes) -> bool:
    """Whether a file's first bytes open a private key: `-----BEGIN ... PRIVATE KEY-----`."""
    first_line = head.lstrip().split(b"\n", 1)[0].rstrip()
    return first_line.startswith(PRIVATE_KEY_START) and first_line.endswith(PRIVATE_KEY_LABEL)


def identity_problem(path: Path) -> str | None:
    """Why the file -i names cannot be the SSH key, or None. A Fabric user's `-i` is the key;
    `fab -i hosts.yaml` (the inventory meant) would end in an authentication error after
    contacting every server."""
    if not path.is_file():
        return f"-i/--identity: {path} is not a file"
    try:
        with path.open("rb") as key:
            head = key.read(200)
    except OSError as error:
        return f"-i/--identity: cannot read {path}: {error.strerror or error}"
    if not looks_like_private_key(head):
        return (f"-i/--identity: {path} is not a private key (no `-----BEGIN ... PRIVATE "
                f"KEY-----` line); -i is the SSH key, as in Fabric: use -I or --inventory for "
                f"the inventory")
    return None


def check_flags(c: Context) -> ConnectOverrides:
    """Refuse (bad input) any Fabric flag the kit does not honour; return the honoured ones."""
    problems = refused_flags(c)
    if problems:
        raise InputError("nothing was contacted: " + "; ".join(problems))
    return connect_overrides(c)
