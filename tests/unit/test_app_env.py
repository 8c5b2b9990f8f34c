"""slotswap.config.app_env: the env file docker reads, secrets from the operator's environment, and
that no secret value ever shows in an error, a repr or the masked description."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.config.app_env import (
    OUTPUT_MASK,
    AppEnv,
    mask_values,
    render_env_file,
    resolve_app_env,
    secret_values_in,
)
from slotswap.config.env import MAX_LINE_BYTES, value_problem
from slotswap.config.inventory import Inventory
from slotswap.config.layout import env_file_path
from slotswap.config.values import name_problem
from slotswap.core.validation import InputError
from tests.unit.fake_server import make_inventory

SECRET = "s3cr3t-value-that-must-never-show"


def inventory_with(env: object, tmp_path: Path) -> Inventory:
    return make_inventory(tmp_path, env=env)


# -- names and values -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["A", "_", "LOG_LEVEL", "a1", "_X_2", "port", "Port"])
def test_good_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A=B", "A\n", "É", "A.B", 5, None])
def test_bad_names(name: object) -> None:
    assert "expected a variable name" in (name_problem(name) or "")


def test_port_is_reserved_for_the_kit() -> None:
    assert "set by slotswap itself" in (name_problem("PORT") or "")


@pytest.mark.parametrize("value", ["", "plain", " lead", "trail ", '"quoted"', "'single'",
                                   "a#b", "#start", "x=y=z", "tab\there", "ünïcödé",
                                   "$HOME `id` $(reboot)"])
def test_values_docker_passes_through_verbatim(value: str) -> None:
    assert value_problem("X", value) is None


@pytest.mark.parametrize(("value", "fragment"), [
    ("a\nb", "line break"),
    ("a\rb", "line break"),
    ("end\r", "line break"),  # docker would drop it silently
    ("a\0b", "NUL"),
    ("\udcff", "not valid UTF-8"),  # what os.environ holds for a byte that is not UTF-8
    ("a" * MAX_LINE_BYTES, "reads at most 65535"),
])
def test_values_docker_cannot_carry(value: str, fragment: str) -> None:
    problem = value_problem("X", value)
    assert problem is not None and fragment in problem
    assert value not in problem


def test_longest_line_docker_reads() -> None:
    # "X=" + value: exactly 65535 bytes is read; one more is "token too long" in docker.
    assert value_problem("X", "a" * (MAX_LINE_BYTES - 2)) is None
    assert value_problem("X", "a" * (MAX_LINE_BYTES - 1)) is not None
    assert value_problem("X", "é" * ((MAX_LINE_BYTES - 2) // 2 + 1)) is not None  # bytes count


# -- the env file ---------------------------------------------------------------------------


def test_env_file_is_name_equals_value_lines_verbatim_in_order() -> None:
    text = render_env_file({"B": "2", "A": 'say "hi" # not a comment', "EMPTY": ""})
    assert text == 'B=2\nA=say "hi" # not a comment\nEMPTY=\n'


def test_empty_env_file() -> None:
    assert render_env_file({}) == ""


@pytest.mark.parametrize(("variables", "fragment"), [
    ({"A B": "1"}, "expected a variable name"),
    ({"PORT": "1"}, "set by slotswap"),
    ({"A": "1\nB=2"}, "line break"),
])
def test_env_file_refuses_what_docker_would_misread(variables: dict[str, str],
                                                    fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        render_env_file(variables)


def test_env_file_path_is_per_app_and_slot(tmp_path: Path) -> None:
    assert env_file_path(inventory_with({}, tmp_path), "web2") == "/etc/slotswap/webapp/web2.env"


def test_env_file_path_follows_remote_dir(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, remote_dir="/home/deploy/slotswap")
    assert env_file_path(inv, "web1") == "/home/deploy/slotswap/webapp/config/web1.env"


# -- resolving secrets ----------------------------------------------------------------------


def test_resolve_reads_secrets_from_the_given_environment_only(tmp_path: Path) -> None:
    inventory = inventory_with(
        {"plain": {"LOG_LEVEL": "info", "WORKERS": 4}, "secret": ["API_TOKEN", "DATABASE_URL"]},
        tmp_path,
    )
    environ = {"API_TOKEN": SECRET, "DATABASE_URL": "postgres://u:p@db/app", "OTHER": "x"}

    app_env = resolve_app_env(inventory, environ)

    assert app_env.text == (
        f"LOG_LEVEL=info\nWORKERS=4\nAPI_TOKEN={SECRET}\nDATABASE_URL=postgres://u:p@db/app\n"
    )
    assert "OTHER" not in app_env.text
    assert app_env.plain == (("LOG_LEVEL", "info"), ("WORKERS", "4"))
    assert app_env.secret_names == ("API_TOKEN", "DATABASE_URL")


def test_resolve_without_env_section_is_empty(tmp_path: Path) -> None:
    app_env = resolve_app_env(inventory_with(None, tmp_path), {"API_TOKEN": SECRET})
    assert app_env.empty
    assert app_env.text == ""
    assert app_env.masked() == "no variables"


def test_missing_secrets_are_all_named_in_one_input_error(tmp_path: Path) -> None:
    inventory = inventory_with({"secret": ["API_TOKEN", "DATABASE_URL", "PRESENT"]}, tmp_path)
    with pytest.raises(InputError) as caught:
        resolve_app_env(inventory, {"PRESENT": SECRET})
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'hosts.yaml'}: env.secret: API_TOKEN, DATABASE_URL "
                              "are not set")
    assert SECRET not in message
    assert "\n" not in message


def test_one_missing_secret(tmp_path: Path) -> None:
    inventory = inventory_with({"secret": ["API_TOKEN"]}, tmp_path)
    with pytest.raises(InputError, match=r"env\.secret: API_TOKEN is not set in the environment"):
        resolve_app_env(inventory, {})


def test_an_empty_secret_is_refused(tmp_path: Path) -> None:
    inventory = inventory_with({"secret": ["API_TOKEN"]}, tmp_path)
    with pytest.raises(InputError, match="API_TOKEN is set but empty"):
        resolve_app_env(inventory, {"API_TOKEN": ""})


@pytest.mark.parametrize("value", [f"{SECRET}\nINJECTED=1", f"{SECRET}\r", f"{SECRET}\0"])
def test_a_secret_docker_cannot_carry_is_refused_without_showing_it(tmp_path: Path,
                                                                     value: str) -> None:
    inventory = inventory_with({"secret": ["API_TOKEN"]}, tmp_path)
    with pytest.raises(InputError) as caught:
        resolve_app_env(inventory, {"API_TOKEN": value})
    message = str(caught.value)
    assert "env.secret: API_TOKEN: the value contains" in message
    assert SECRET not in message
    assert SECRET not in repr(caught.value)


# -- masking --------------------------------------------------------------------------------


def test_masked_names_every_variable_and_shows_no_secret(tmp_path: Path) -> None:
    inventory = inventory_with(
        {"plain": {"LOG_LEVEL": "info", "GREETING": "hello world", "EMPTY": ""},
         "secret": ["API_TOKEN"]},
        tmp_path,
    )
    app_env = resolve_app_env(inventory, {"API_TOKEN": SECRET})

    assert app_env.masked() == (
        "LOG_LEVEL=info, GREETING='hello world', EMPTY='', API_TOKEN=<secret>"
    )
    for shown in (app_env.masked(), repr(app_env), str(app_env), f"{app_env}",
                  repr([app_env]), repr({"env": app_env})):
        assert SECRET not in shown
    assert SECRET in app_env.text


def test_long_plain_values_are_shortened_in_the_description() -> None:
    app_env = AppEnv(text="", plain=(("BIG", "x" * 500),))
    assert len(app_env.masked()) < 60
    assert app_env.masked().endswith("...")


def test_output_is_masked_wherever_a_secret_value_is_in_it(tmp_path: Path) -> None:
    inventory = inventory_with({"plain": {"LOG_LEVEL": "info"},
                                "secret": ["DB_PASSWORD", "API_TOKEN"]}, tmp_path)
    app_env = resolve_app_env(inventory, {"DB_PASSWORD": "pw-42", "API_TOKEN": SECRET})
    printed = (f"connecting to postgres://app:pw-42@db/app\n{SECRET}\n"
               f"token={SECRET}; again pw-42pw-42\nlevel info")
    assert app_env.mask(printed) == (
        f"connecting to postgres://app:{OUTPUT_MASK}@db/app\n{OUTPUT_MASK}\n"
        f"token={OUTPUT_MASK}; again {OUTPUT_MASK}{OUTPUT_MASK}\nlevel info")
    assert SECRET not in repr(app_env) and "pw-42" not in repr(app_env)


def test_a_plain_value_with_a_secret_in_it_is_described_masked(tmp_path: Path) -> None:
    inventory = inventory_with({"plain": {"URL": "db://u:pw-42@h"}, "secret": ["PW"]}, tmp_path)
    app_env = resolve_app_env(inventory, {"PW": "pw-42"})
    assert app_env.masked() == f"URL=db://u:{OUTPUT_MASK}@h, PW=<secret>"


def test_a_value_that_contains_another_is_masked_whole() -> None:
    assert mask_values("key=abcdef", ["abc", "abcdef"]) == f"key={OUTPUT_MASK}"
    assert mask_values("a.b", [".", "a.b"]) == OUTPUT_MASK  # values are text, not patterns
    assert mask_values("nothing to hide", []) == "nothing to hide"
    assert mask_values("x", [""]) == "x"


def test_the_secret_values_this_environment_sets(tmp_path: Path) -> None:
    inventory = inventory_with({"secret": ["A", "B", "C"]}, tmp_path)
    assert secret_values_in(inventory, {"A": "one", "C": "", "OTHER": "x"}) == ("one",)
