"""Hooks: programs named in the inventory (`hooks:`), run on the operator's machine before
a deploy or rollback, after one that succeeded and after one that did not.

They get what happened in SLOTSWAP_* environment variables, never a secret: every variable
the inventory names as one (env.secret, roles.*.env.secret, registry.password_secret,
https.files.*_secret) is taken out of the environment they inherit. Their output goes to
stderr, so that stdout stays the JSON document under --json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from slotswap.config.inventory import Inventory
from slotswap.fleet.errors import EXIT_INTERRUPTED

HOOK_TIMEOUT = 300.0
PRE_DEPLOY, POST_SUCCESS, POST_FAILURE = "pre_deploy", "post_success", "post_failure"
OUTCOME_SUCCESS, OUTCOME_FAILURE, OUTCOME_INTERRUPTED = "success", "failure", "interrupted"


class HookFailedError(RuntimeError):
    """A hook exited non-zero, ran too long or could not be started."""


def hook_environment(inherited: Mapping[str, str], inventory: Inventory, *, hook: str,
                     task: str, tag: str) -> dict[str, str]:
    """The operator's environment without any secret the inventory names or stale
    SLOTSWAP_* values, plus what the hook is told about the run."""
    secrets = set(inventory.secret_variables)
    env = {name: value for name, value in inherited.items()
           if name not in secrets and not name.startswith("SLOTSWAP_")}
    env.update({
        "SLOTSWAP_HOOK": hook,
        "SLOTSWAP_TASK": task,
        "SLOTSWAP_APP": inventory.app,
        "SLOTSWAP_IMAGE": inventory.image,
        "SLOTSWAP_TAG": tag,
        "SLOTSWAP_INVENTORY": str(inventory.path),
        "SLOTSWAP_SERVERS": " ".join(host.name for host in inventory.hosts),
        "SLOTSWAP_ADDRESSES": " ".join(host.address for host in inventory.hosts),
    })
    return env


def outcome_of(exit_code: int) -> str:
    if exit_code == 0:
        return OUTCOME_SUCCESS
    return OUTCOME_INTERRUPTED if exit_code == EXIT_INTERRUPTED else OUTCOME_FAILURE


def result_environment(exit_code: int, message: str, document: Mapping[str, object]
                       ) -> dict[str, str]:
    return {
        "SLOTSWAP_OUTCOME": outcome_of(exit_code),
        "SLOTSWAP_EXIT_CODE": str(exit_code),
        "SLOTSWAP_MESSAGE": message,
        "SLOTSWAP_RESULT_JSON": json.dumps(document),
    }


def run_hook(program: Path, env: Mapping[str, str], *, cwd: Path,
             timeout: float = HOOK_TIMEOUT) -> None:
    """Run one hook (no arguments, stdin closed, stdout to our stderr); raise
    HookFailedError unless it exits 0 within `timeout` seconds."""
    label = f"{env.get('SLOTSWAP_HOOK', 'hook')} hook {program}"
    try:
        completed = subprocess.run([str(program)], cwd=cwd, env=dict(env), timeout=timeout,
                                   stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(),
                                   check=False)
    except subprocess.TimeoutExpired:
        raise HookFailedError(f"{label} ran longer than {timeout:g}s and was killed") from None
    except OSError as error:
        raise HookFailedError(f"{label} could not be started: {error}") from None
    if completed.returncode != 0:
        raise HookFailedError(f"{label} exited {completed.returncode}")


def before(inventory: Inventory, environ: Mapping[str, str], *, task: str, tag: str) -> None:
    """The pre_deploy hook, if any; HookFailedError means: do not start."""
    program = inventory.hooks.pre_deploy
    if program is None:
        return
    env = hook_environment(environ, inventory, hook=PRE_DEPLOY, task=task, tag=tag)
    run_hook(program, env, cwd=inventory.path.parent)


def after(inventory: Inventory, environ: Mapping[str, str], *, task: str, tag: str,
          exit_code: int, message: str, document: Mapping[str, object]) -> None:
    """post_success or post_failure, as the run ended; HookFailedError is the caller's to
    report (the run's own outcome stands)."""
    hook = POST_SUCCESS if exit_code == 0 else POST_FAILURE
    program = getattr(inventory.hooks, hook)
    if program is None:
        return
    env = hook_environment(environ, inventory, hook=hook, task=task, tag=tag)
    env.update(result_environment(exit_code, message, document))
    run_hook(program, env, cwd=inventory.path.parent)
