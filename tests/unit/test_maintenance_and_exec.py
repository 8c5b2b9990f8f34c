"""Maintenance mode's runtime-API lines and page, and exec's docker commands."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.config.loader import load_inventory
from slotswap.core.validation import InputError
from slotswap.server import maintenance
from slotswap.server.one_off import parse_command

MAP = "/usr/local/etc/haproxy/maintenance.map"


@pytest.fixture
def inventory(tmp_path: Path):
    (tmp_path / "hosts.yaml").write_text("app: webapp\nimage: r.example/webapp\n"
                                         "hosts: [192.0.2.1]\n")
    return load_inventory(tmp_path / "hosts.yaml")


def test_the_page_escapes_the_message_and_travels_as_base64(inventory) -> None:
    page = maintenance.render_page(inventory, "Back <soon> & better")
    assert "Back &lt;soon&gt; &amp; better" in page
    entries = maintenance.map_entries(page, 90)
    assert entries[0] == ("retry", "90")
    assert entries[-1][0] == "page"  # last: it is what turns the mode on
    assert base64.b64decode(entries[-1][1]).decode() == page
    assert " " not in entries[-1][1]


def test_on_is_one_line_that_clears_then_fills_the_map() -> None:
    line = maintenance.on_commands([("retry", "90"), ("page", "PGgxPg==")])
    assert line == (f"clear map {MAP}; add map {MAP} retry 90; add map {MAP} page PGgxPg==")
    assert maintenance.off_command() == f"clear map {MAP}"
    assert maintenance.map_file([("retry", "90"), ("page", "PGgxPg==")]) == \
        "retry 90\npage PGgxPg==\n"


def test_show_map_is_read_by_key() -> None:
    answer = "0x55d0c1e2f0a0 retry 90\n0x55d0c1e2f0d0 page PGgxPg==\n\n"
    assert maintenance.parse_show_map(answer) == {"retry": "90", "page": "PGgxPg=="}
    assert maintenance.parse_show_map("\n") == {}


def test_a_project_template_replaces_the_page(inventory, tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "maintenance.html.j2").write_text("<p>{{ message }}</p>\n")
    assert maintenance.render_page(inventory, "x") == "<p>x</p>"


def test_exec_commands_are_argv_with_the_app_s_network_and_environment() -> None:
    assert docker.run_one_off(image="sha256:abc", network="webapp", app="webapp",
                              command=["bin/rails", "db:migrate:status"], app_port=3000,
                              env_file="/etc/slotswap/webapp/web2.env", tty=False,
                              name="webapp-exec-0a1b2c3d") == [
        "docker", "run", "--rm", "--interactive", "--name", "webapp-exec-0a1b2c3d",
        "--network", "webapp",
        "--label", "slotswap.app=webapp", "--label", "slotswap.role=one-off",
        "--env-file", "/etc/slotswap/webapp/web2.env", "--env", "PORT=3000",
        "sha256:abc", "bin/rails", "db:migrate:status"]
    assert docker.exec_in("webapp-web1", ["sh"], tty=True) == [
        "docker", "exec", "--interactive", "--tty", "webapp-web1", "sh"]


def test_exec_command_text_is_split_like_a_shell_would_and_never_empty() -> None:
    assert parse_command("bin/rails runner 'puts 1; puts 2'") == [
        "bin/rails", "runner", "puts 1; puts 2"]
    with pytest.raises(InputError, match="--command is required"):
        parse_command("  ")
    with pytest.raises(InputError, match="--command: No closing quotation"):
        parse_command("echo 'open")
