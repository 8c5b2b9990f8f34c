"""The app's environment: plain values from the inventory and secrets from the operator's
environment, rendered as the env file `docker run --env-file` reads.

Everything here is pure. The rules follow what the env-file reader of the docker CLI (the
one on the server) accepts, checked with docker 28.2: one `NAME=VALUE` per line, the value
taken verbatim up to the end of the line (quotes are NOT removed; '#' starts a comment only
at the start of a line), a trailing carriage return dropped, at most 64 KiB - 1 bytes per
line, UTF-8 only. A value that cannot survive that trip is refused, never silently changed.

Secret values never appear in an error message, a repr or `AppEnv.masked()`, and
`AppEnv.mask` (or `mask_values`) hides them in what the app printed before the kit shows or
keeps it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from slotswap.config.env import EnvSettings, value_problem
from slotswap.config.roles import RoleSettings, role_env
from slotswap.config.values import name_problem
from slotswap.core.validation import InputError

if TYPE_CHECKING:
    from slotswap.config.inventory import Inventory

__all__ = [
    "AppEnv",
    "mask_values",
    "render_env_file",
    "resolve_app_env",
    "resolve_role_env",
    "secret_values_in",
]

SECRET_MARK = "<secret>"
# What stands for a secret's value in output the kit shows or keeps (a release command's).
OUTPUT_MASK = "******"
_MAX_SHOWN_PLAIN = 40


def render_env_file(variables: Mapping[str, str]) -> str:
    """`NAME=VALUE` lines in the given order; values are written verbatim (docker unquotes
    nothing), so they must already have passed value_problem."""
    for name, value in variables.items():
        problem = name_problem(name) or value_problem(name, value)
        if problem is not None:
            raise InputError(f"cannot write {name!r} to an env file: {problem}")
    return "".join(f"{name}={value}\n" for name, value in variables.items())


@dataclass(frozen=True, repr=False)
class AppEnv:
    """The resolved environment of the app: the env-file text (secrets included) and what can
    be shown of it."""

    text: str = field(repr=False)  # the env file, secret values included: never print it
    plain: tuple[tuple[str, str], ...] = ()
    secret_names: tuple[str, ...] = ()
    secret_values: tuple[str, ...] = field(default=(), repr=False)  # never print them
    # Each role's environment (the app's with the role's on top), resolved with the app's.
    roles: tuple[tuple[str, AppEnv], ...] = field(default=(), repr=False)

    def of_role(self, name: str) -> AppEnv:
        """The environment of role `name`'s containers."""
        return dict(self.roles)[name]

    def mask(self, output: str) -> str:
        """What the app printed, each secret value in it replaced by OUTPUT_MASK."""
        return mask_values(output, self.secret_values)

    @property
    def empty(self) -> bool:
        return not self.plain and not self.secret_names

    def masked(self) -> str:
        """One line naming every variable, with the plain values and no secret value (not
        even inside a plain one)."""
        if self.empty:
            return "no variables"
        shown = [f"{name}={_shorten(self.mask(value))}" for name, value in self.plain]
        shown += [f"{name}={SECRET_MARK}" for name in self.secret_names]
        return ", ".join(shown)

    def __repr__(self) -> str:
        # A SlotSwap (a dataclass) holding this shows it in its own repr, e.g. in a traceback.
        return f"AppEnv({self.masked()})"

    __str__ = __repr__


def mask_values(text: str, values: Iterable[str]) -> str:
    """`text` with every occurrence of each value replaced by OUTPUT_MASK, inside a longer
    line too; the longest values first, so that one containing another is masked whole.
    Only the values as they are: an encoded form (URL-escaped, base64) is not recognised."""
    found = sorted({value for value in values if value}, key=len, reverse=True)
    if not found:
        return text
    return re.sub("|".join(re.escape(value) for value in found), OUTPUT_MASK, text)


def secret_values_in(inventory: Inventory, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the app's and the roles' secrets that `environ` sets, for masking
    output read back later (the history): none required, none checked."""
    return tuple(environ[name] for name in inventory.env_secrets if environ.get(name))


def _shorten(value: str) -> str:
    # Quoted when blanks would otherwise be invisible or ambiguous in a one-line summary.
    shown = value if value and not any(c.isspace() for c in value) else repr(value)
    return shown if len(shown) <= _MAX_SHOWN_PLAIN else shown[: _MAX_SHOWN_PLAIN - 3] + "..."


def resolve_app_env(inventory: Inventory, environ: Mapping[str, str]) -> AppEnv:
    """The inventory's env with each secret read from ``environ`` (the operator's
    environment). Call it when a deploy starts, before any server is contacted: a missing
    secret is an InputError naming every missing variable, and no value is ever shown.
    Each role's environment (roles.<name>.env on top of the app's) is resolved with it."""
    app = _resolve(inventory.env, f"{inventory.path}: env.secret", environ)
    return replace(app, roles=tuple((role.name, resolve_role_env(inventory, role, environ))
                                    for role in inventory.roles))


def resolve_role_env(inventory: Inventory, role: RoleSettings,
                     environ: Mapping[str, str]) -> AppEnv:
    """The environment of one role's containers (the app's env with the role's on top, see
    slotswap.config.roles.role_env), each secret read from ``environ`` by the same rules as
    the app's."""
    where = f"{inventory.path}: roles.{role.name}.env.secret (or env.secret)"
    return _resolve(role_env(inventory.env, role), where, environ)


def _resolve(settings: EnvSettings, where: str, environ: Mapping[str, str]) -> AppEnv:
    missing = [name for name in settings.secret if name not in environ]
    if missing:
        names = ", ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        raise InputError(
            f"{where}: {names} {verb} not set in the environment of this deploy; export "
            f"{'it' if len(missing) == 1 else 'them'} first (secrets are read from the "
            "operator's environment, never from the inventory)"
        )
    secrets: dict[str, str] = {}
    for name in settings.secret:
        value = environ[name]
        if value == "":
            raise InputError(
                f"{where}: {name} is set but empty in the environment of this deploy (an "
                "unset variable expanded by mistake?); put a value that may be empty in "
                "env.plain"
            )
        problem = value_problem(name, value)
        if problem is not None:
            raise InputError(f"{where}: {name}: {problem} (the value, from the environment "
                             "of this deploy, is not shown)")
        secrets[name] = value
    plain = dict(settings.plain)
    return AppEnv(
        text=render_env_file({**plain, **secrets}),
        plain=settings.plain,
        secret_names=settings.secret,
        secret_values=tuple(secrets.values()),
    )
