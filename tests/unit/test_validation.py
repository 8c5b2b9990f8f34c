from collections.abc import Callable

import pytest

from slotswap.core.validation import (
    InputError,
    validate_app_name,
    validate_host_address,
    validate_image_reference,
    validate_image_repository,
    validate_tag,
    validate_url_path,
)

Validator = Callable[[str], str]

# Values that would break out of a shell command or a haproxy.cfg line; none of the
# validators may let them through.
HOSTILE = [
    "",
    " ",
    "a b",
    "a;b",
    "a|b",
    "a&&b",
    "$(id)",
    "`id`",
    "a'b",
    'a"b',
    "a\nb",
    "a\\b",
    "a#b",
    "a\tb",
    "web1\n",
]

ALL_VALIDATORS = [
    validate_tag,
    validate_image_repository,
    validate_image_reference,
    validate_app_name,
    validate_host_address,
    validate_url_path,
]


def test_input_error_is_a_value_error_whose_str_is_the_message() -> None:
    error = InputError("invalid thing")
    assert isinstance(error, ValueError)
    assert str(error) == "invalid thing"


@pytest.mark.parametrize("validator", ALL_VALIDATORS, ids=lambda v: v.__name__)
@pytest.mark.parametrize("value", HOSTILE)
def test_no_validator_accepts_shell_or_config_metacharacters(
    validator: Validator, value: str
) -> None:
    with pytest.raises(InputError):
        validator(value)


@pytest.mark.parametrize(
    "tag", ["v1", "latest", "1.2.3", "_build", "A-b_c.D", "2024-01-31.1", "x" * 128]
)
def test_valid_tags_are_returned(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".hidden", "-rc1", "v1+build", "v:1", "v/1", "x" * 129])
def test_invalid_tags_are_refused_with_the_rule(tag: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_tag(tag)
    assert str(caught.value) == (
        f"invalid tag {tag!r}: a Docker tag is 1-128 letters, digits, '_', '.' or '-', "
        "not starting with '.' or '-'"
    )


@pytest.mark.parametrize(
    "ref",
    [
        "webapp",
        "acme/webapp",
        "acme/web-app/api",
        "web__app",
        "web.app",
        "web---app",
        "registry.example.com/acme/webapp",
        "registry.example.com:5000/acme/webapp",
        "10.1.2.3:5000/webapp",
        "localhost/webapp",
        "localhost:5000/acme/webapp",
        "Registry.Example.COM/acme/webapp",
    ],
)
def test_valid_image_repositories_are_returned(ref: str) -> None:
    assert validate_image_repository(ref) == ref


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("webapp:v1", "a tag is not allowed"),
        ("registry.example.com:5000/acme/webapp:v1", "a tag is not allowed"),
        ("webapp@sha256:" + "a" * 64, "a digest"),
        ("Acme/webapp", "lowercase"),
        ("acme/WebApp", "lowercase"),
        ("acme//webapp", "lowercase"),
        ("acme/webapp/", "lowercase"),
        ("/webapp", "lowercase"),
        ("-webapp", "lowercase"),
        ("web_-app", "lowercase"),
        ("web___app", "lowercase"),
        ("registry.example.com/", "lowercase"),
        ("reg_istry.example.com/webapp", "not a registry host"),
        ("registry.example.com:port/webapp", "not a registry host"),
        ("a/" + "b" * 300, "longer than 255"),
    ],
)
def test_invalid_image_repositories_say_why(ref: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_image_repository(ref)
    message = str(caught.value)
    assert message.startswith(f"invalid image repository {ref!r}: ")
    assert reason in message
    assert "registry.example.com:5000/acme/webapp" in message  # shows the expected shape


@pytest.mark.parametrize(
    "ref",
    [
        "haproxy",
        "haproxy:2.8",
        "haproxy:2.8-alpine",
        "library/haproxy:lts",
        "10.1.2.3:5000/haproxy:2.6",
        "10.1.2.3:5000/haproxy",
        "localhost:5000/haproxy:2.8",
    ],
)
def test_valid_image_references_are_returned(ref: str) -> None:
    assert validate_image_reference(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "haproxy:",
        "haproxy:.8",
        "haproxy:2.8:1",
        "HAProxy:2.8",
        "haproxy@sha256:" + "a" * 64,
        "10.1.2.3:5000/",
        ":2.8",
    ],
)
def test_invalid_image_references_are_refused(ref: str) -> None:
    with pytest.raises(InputError, match=r"^invalid image reference .*'haproxy:2\.8'"):
        validate_image_reference(ref)


@pytest.mark.parametrize("name", ["a", "webapp", "web-app", "app2", "a" * 32, "a1-b2"])
def test_valid_app_names_are_returned(name: str) -> None:
    assert validate_app_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "WebApp", "web_app", "web.app", "1app", "-app", "app-", "a" * 33, "wéb"]
)
def test_invalid_app_names_are_refused(name: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_app_name(name)
    assert str(caught.value) == (
        f"invalid app name {name!r}: expected 1-32 lowercase letters, digits or '-', "
        "starting with a letter and not ending with '-'"
    )


@pytest.mark.parametrize(
    "address",
    [
        "203.0.113.10",
        "2001:db8::10",
        "::1",
        "localhost",
        "web1",
        "web-1.example.com",
        "WEB1.Example.Com",
        "1host.example",
        "a" * 63 + ".example",
        ".".join(["a" * 63] * 3) + "." + "b" * 61,  # 253 characters
    ],
)
def test_valid_host_addresses_are_returned(address: str) -> None:
    assert validate_host_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "203.0.113.300",
        "203.0.113",
        "203.0.113.010",
        "2001:db8::10::1",
        "fe80::1%eth0",
        "[2001:db8::10]",
        "web_1.example.com",
        "-web.example.com",
        "web-.example.com",
        "web..example.com",
        "web.example.com.",
        "a" * 64 + ".example",
        ".".join(["a" * 63] * 3) + "." + "b" * 62,  # 254 characters
        "user@host",
        "host:22",
    ],
)
def test_invalid_host_addresses_are_refused(address: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_host_address(address)
    message = str(caught.value)
    assert message.startswith(f"invalid host address {address!r}: expected a DNS name")
    assert "IPv4/IPv6 address" in message


@pytest.mark.parametrize(
    "path", ["/", "/health", "/healthz/ready", "/status?full=1&x=y", "/a%20b", "/~u/a-b_c.d:@!$"]
)
def test_valid_url_paths_are_returned(path: str) -> None:
    assert validate_url_path(path) == path


@pytest.mark.parametrize(
    "path", ["health", "/he alth", "/a#b", "/a'b", '/a"b', "/a%2", "/a%zz", "/é", "/a<b>", "/{x}"]
)
def test_invalid_url_paths_are_refused(path: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_url_path(path)
    message = str(caught.value)
    assert message.startswith(f"invalid URL path {path!r}: expected a path starting with '/'")
    assert "%XX" in message
