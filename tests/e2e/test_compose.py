"""docker-compose.yml and the Dockerfile only run commands this project really has.

Docker is not needed: the compose file is read with PyYAML, and each command line it (or
the Dockerfile's CMD) runs is checked against the installed console script by running
``<script> <subcommand> --help``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
BIN_DIR = Path(sys.executable).parent


COMPOSE: dict = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
PROJECT: dict = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SCRIPTS: dict[str, str] = PROJECT.get("scripts", {})


def _built_from_repo(service: dict) -> bool:
    """Whether the service's image is built from this repository's Dockerfile."""
    build = service.get("build")
    if build is None:
        return False
    if isinstance(build, str):
        build = {"context": build}
    context = (ROOT / build.get("context", ".")).resolve()
    dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
    return context == ROOT and dockerfile == DOCKERFILE


APP_SERVICES = sorted(name for name, service in SERVICES.items() if _built_from_repo(service))


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> source (a named volume or a host path) of each mount."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            # The host part may hold "${VAR:-default}", whose ":-" is not a separator.
            source, target = re.match(r"^((?:\$\{[^}]*\}|[^:])*):([^:]+)", volume).groups()
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


@functools.cache
def _help(script: str, subcommand: str) -> str:
    """The ``--help`` text of ``script subcommand``, from the real installed script."""
    executable = BIN_DIR / script
    assert executable.exists(), (
        f"{executable} is missing: install the project (pip install -e .) in this environment"
    )
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run(
        [str(executable), subcommand, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"`{script} {subcommand} --help` exited {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _check_command_line(argv: list[str], where: str) -> None:
    assert len(argv) >= 2, f"{where}: {argv} names no subcommand"
    script, subcommand, *rest = argv
    assert script in SCRIPTS, (
        f"{where}: {script!r} is not a console script in [project.scripts] ({sorted(SCRIPTS)})"
    )
    help_text = _help(script, subcommand)
    for word in rest:
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text), (
                f"{where}: `{script} {subcommand}` has no option {option}:\n{help_text}"
            )


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_services_are_built_from_the_repository() -> None:
    assert {"migrate", "api", "worker"} <= set(APP_SERVICES), (
        f"migrate, api and worker must build from ./Dockerfile; built from it: {APP_SERVICES}"
    )
    images = {SERVICES[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1, f"the app services should share one image, not {images}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_command_runs_an_existing_subcommand(name: str) -> None:
    service = SERVICES[name]
    assert "command" in service, f"{name} has no command"
    assert "entrypoint" not in service, f"{name}: the command is meant as the whole command line"
    _check_command_line(_argv(service["command"]), f"service {name}")


def test_dockerfile_cmd_runs_an_existing_subcommand() -> None:
    instructions = _dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    assert "ENTRYPOINT" not in keywords, (
        "the compose commands are whole command lines, so the image must not set an ENTRYPOINT"
    )
    commands = [arguments for keyword, arguments in instructions if keyword == "CMD"]
    assert commands, "the Dockerfile has no CMD"
    cmd = commands[-1]
    argv = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
    _check_command_line(argv, "Dockerfile CMD")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_depends_on_defined_services(name: str) -> None:
    depends_on = SERVICES[name].get("depends_on") or []
    if isinstance(depends_on, dict):
        conditions = {target: (spec or {}).get("condition") for target, spec in depends_on.items()}
    else:
        conditions = dict.fromkeys(depends_on)
    for target, condition in conditions.items():
        assert target in SERVICES, f"{name} depends on {target!r}, which is not a service"
        assert target != name, f"{name} depends on itself"
        assert condition in {
            None,
            "service_started",
            "service_healthy",
            "service_completed_successfully",
        }, f"{name}: unknown depends_on condition {condition!r}"
        if condition == "service_healthy":
            assert "healthcheck" in SERVICES[target], f"{name} waits for {target} to be healthy"
        if condition == "service_completed_successfully":
            restart = str(SERVICES[target].get("restart", "no"))
            assert restart in {"no", "on-failure"} or restart.startswith("on-failure"), (
                f"{name} waits for {target} to finish, but {target} restarts ({restart})"
            )


def test_api_and_worker_share_the_database_and_the_artifacts() -> None:
    api, worker = SERVICES["api"], SERVICES["worker"]
    api_env, worker_env = _environment(api), _environment(worker)

    url = api_env.get("NAS_DATABASE_URL")
    assert url, "the api has no NAS_DATABASE_URL"
    assert worker_env.get("NAS_DATABASE_URL") == url, "api and worker use different databases"
    host = urlsplit(url).hostname
    assert host in SERVICES, f"NAS_DATABASE_URL points at {host!r}, which is not a service"

    artifacts_dir = api_env.get("NAS_ARTIFACTS_DIR")
    assert artifacts_dir, "the api has no NAS_ARTIFACTS_DIR"
    assert worker_env.get("NAS_ARTIFACTS_DIR") == artifacts_dir
    api_source = _mounts(api).get(artifacts_dir)
    worker_source = _mounts(worker).get(artifacts_dir)
    assert api_source, f"nothing is mounted at the api's NAS_ARTIFACTS_DIR {artifacts_dir}"
    assert api_source == worker_source, (
        f"api mounts {api_source!r} and worker {worker_source!r} at {artifacts_dir}"
    )
    assert api_source in (COMPOSE.get("volumes") or {}), (
        f"{api_source!r} is not a named volume declared at the top level"
    )


@pytest.mark.parametrize("name", ["api", "worker"])
def test_data_roots_are_mounted(name: str) -> None:
    service = SERVICES[name]
    roots = [root for root in _environment(service).get("NAS_DATA_ROOTS", "").split(":") if root]
    assert roots, f"{name} has no NAS_DATA_ROOTS"
    mounts = _mounts(service)
    for root in roots:
        assert root in mounts, f"{name}: data root {root} is not mounted"
