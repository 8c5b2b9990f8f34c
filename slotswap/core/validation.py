"""Checks for user-supplied values before they reach a shell, Docker or haproxy.cfg.

Every value checked here ends up in a remote command line, a Docker object name or the
HAProxy configuration, so each check is an allow-list: anything unusual is refused with a
message saying what was expected rather than being quoted and hoped for the best.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "InputError",
    "validate_app_name",
    "validate_host_address",
    "validate_image_reference",
    "validate_image_repository",
    "validate_remote_dir",
    "validate_tag",
    "validate_url_path",
]


class InputError(ValueError):
    """Bad user input. ``str()`` of the error is the complete message shown to the user."""


_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

# Docker's reference grammar: the first component is a registry host only when it looks
# like one, otherwise "acme/webapp" would be read as registry "acme".
_REGISTRY_HOST = re.compile(r"[a-zA-Z0-9.-]+(?::[0-9]{1,5})?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_MAX_REPOSITORY_LENGTH = 255

_APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]|[a-z]")

# A folder on the servers: absolute, plain characters only (it goes into command lines and
# into `docker run --volume`, where ':' and ',' mean something).
_REMOTE_DIR = re.compile(r"(?:/[A-Za-z0-9_.@+-]+)+/?")
_MAX_REMOTE_DIR_LENGTH = 200

_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAX_HOSTNAME_LENGTH = 253

# RFC 3986 pchar plus '/' and '?', minus the single quote: HAProxy's config parser treats
# quotes, whitespace and '#' specially, and '%' must start a percent-encoded octet.
_URL_PATH = re.compile(r"/(?:[A-Za-z0-9._~!$&()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*")


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid Docker image tag, else raise InputError."""
    if not _TAG.fullmatch(tag):
        raise InputError(
            f"invalid tag {tag!r}: a Docker tag is 1-128 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )
    return tag


def _is_registry_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def _repository_problem(ref: str) -> str | None:
    """Say what is wrong with a repository name (no tag, no digest), or None if valid."""
    if "@" in ref:
        return "a digest ('@sha256:...') is not allowed here"
    if ":" in ref.rpartition("/")[2]:
        return "a tag is not allowed here; the tag is chosen at deploy time"
    if len(ref) > _MAX_REPOSITORY_LENGTH:
        return f"it is longer than {_MAX_REPOSITORY_LENGTH} characters"
    first, slash, rest = ref.partition("/")
    if slash and _is_registry_host(first):
        if not _REGISTRY_HOST.fullmatch(first):
            return f"{first!r} is not a registry host[:port]"
        path = rest
    else:
        path = ref
    if not _REPOSITORY_PATH.fullmatch(path):
        return (
            "path components must be lowercase letters and digits, "
            "separated by '.', '_', '__' or '-', joined by '/'"
        )
    return None


def validate_image_repository(ref: str) -> str:
    """Return ``ref`` if it is an image repository without tag or digest, else raise."""
    problem = _repository_problem(ref)
    if problem is not None:
        raise InputError(
            f"invalid image repository {ref!r}: {problem} "
            "(expected [registry-host[:port]/]path, e.g. 'registry.example.com:5000/acme/webapp')"
        )
    return ref


def _split_tag(ref: str) -> tuple[str, str | None]:
    """Split ``repo:tag`` into its parts; a ':' before the last '/' belongs to a port."""
    head, slash, last = ref.rpartition("/")
    name, colon, tag = last.partition(":")
    if not colon:
        return ref, None
    return f"{head}{slash}{name}", tag


def validate_image_reference(ref: str) -> str:
    """Return ``ref`` if it is an image repository with an optional ``:tag``, else raise."""
    repository, tag = _split_tag(ref)
    problem = _repository_problem(repository)
    if problem is None and tag is not None and not _TAG.fullmatch(tag):
        problem = f"{tag!r} is not a valid tag"
    if problem is not None:
        raise InputError(
            f"invalid image reference {ref!r}: {problem} "
            "(expected [registry-host[:port]/]path[:tag], e.g. 'haproxy:2.8')"
        )
    return ref


def validate_app_name(name: str) -> str:
    """Return ``name`` if it can serve as Docker network, container prefix and DNS name."""
    if not _APP_NAME.fullmatch(name):
        raise InputError(
            f"invalid app name {name!r}: expected 1-32 lowercase letters, digits or '-', "
            "starting with a letter and not ending with '-'"
        )
    return name


def _is_ip_address(value: str) -> bool:
    # ipaddress accepts IPv6 zone ids ("fe80::1%eth0") containing almost any character,
    # spaces included; a zone names an interface of one machine, so no server needs one.
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_hostname(value: str) -> bool:
    if not value or len(value) > _MAX_HOSTNAME_LENGTH:
        return False
    labels = value.split(".")
    # An all-digit last label is a mistyped IPv4 address (e.g. 203.0.113.300), not a name.
    if labels[-1].isdigit():
        return False
    return all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)


def validate_host_address(value: str) -> str:
    """Return ``value`` if it is a DNS host name or an IPv4/IPv6 address, else raise."""
    if not (_is_ip_address(value) or _is_hostname(value)):
        raise InputError(
            f"invalid host address {value!r}: expected a DNS name such as 'web1.example.com' "
            "or an IPv4/IPv6 address such as '203.0.113.10'"
        )
    return value


def validate_url_path(path: str) -> str:
    """Return ``path`` if it is safe to use as an HTTP request path in haproxy.cfg."""
    if not _URL_PATH.fullmatch(path):
        raise InputError(
            f"invalid URL path {path!r}: expected a path starting with '/' made of letters, "
            "digits and -._~!$&()*+,;=:@/? with anything else percent-encoded as %XX"
        )
    return path


def validate_remote_dir(path: str) -> str:
    """Return ``path`` without a trailing '/' if it is an absolute folder of plain
    characters, else raise InputError."""
    if path.startswith("~"):
        raise InputError(
            f"expected an absolute path, got {path!r}: '~' would be the home of whoever runs "
            "the command; write the login's home in full, e.g. /home/deploy/slotswap"
        )
    if not _REMOTE_DIR.fullmatch(path) or len(path) > _MAX_REMOTE_DIR_LENGTH:
        raise InputError(
            f"expected an absolute folder path of letters, digits, '_', '.', '@', '+', '-' "
            f"and '/' (at most {_MAX_REMOTE_DIR_LENGTH} characters), got {path!r}"
        )
    if any(part in (".", "..") for part in path.split("/")):
        raise InputError(f"expected a path without '.' or '..' components, got {path!r}")
    return path.rstrip("/")
