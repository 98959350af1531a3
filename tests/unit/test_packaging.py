"""The install files stay true to the code: one version, the real tool names and settings, a
registry entry valid against the registry's published schema, and a container file that names only
settings that exist. (Building and running them is tests/e2e/test_install.py.)"""

from __future__ import annotations

import json
import re
import struct
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client

from luma_mcp import __version__
from luma_mcp.config import Settings
from luma_mcp.server import create_server

from ..helpers.common import make_settings

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {str(field.validation_alias) for field in Settings.model_fields.values()}


def load(name: str) -> Any:
    return json.loads((ROOT / name).read_text())


MANIFEST = load("manifest.json")
ENTRY = load("server.json")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = (ROOT / "compose.yaml").read_text()


def test_every_file_that_repeats_the_version_has_the_packages_version() -> None:
    assert PYPROJECT["project"]["dynamic"] == ["version"]  # hatch reads src/luma_mcp/__init__.py
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "src/luma_mcp/__init__.py"
    assert MANIFEST["version"] == __version__
    assert ENTRY["version"] == __version__
    for package in ENTRY["packages"]:
        assert package["version"] == __version__, package["registryType"]
    (bundle,) = [p for p in ENTRY["packages"] if p["registryType"] == "mcpb"]
    assert f"/releases/download/v{__version__}/luma-mcp.mcpb" in bundle["identifier"]
    assert f"image: luma-mcp:{__version__}" in COMPOSE


def test_the_registry_entry_is_valid_against_the_kept_schema() -> None:
    schema = load("schemas/server.schema.json")
    assert ENTRY["$schema"] == schema["$id"]  # the kept copy is the version the entry names
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    validator.validate(ENTRY)
    # The copy is the real schema, not a permissive stand-in: it refuses what the registry refuses.
    broken = {**ENTRY, "name": "no-slash", "description": "x" * 101}
    assert {error.validator for error in validator.iter_errors(broken)} == {"pattern", "maxLength"}
    latest = {**ENTRY, "packages": [{**ENTRY["packages"][0], "version": "latest"}]}
    assert not validator.is_valid(latest)


def test_the_registry_entry_lists_the_package_index_release_run_with_uvx() -> None:
    (pypi,) = [p for p in ENTRY["packages"] if p["registryType"] == "pypi"]
    assert pypi["identifier"] == PYPROJECT["project"]["name"]
    # `uvx NAME` runs the command called NAME: the package must install one.
    assert PYPROJECT["project"]["scripts"][pypi["identifier"]] == PYPROJECT["project"]["scripts"]["luma-mcp"]
    assert pypi["runtimeHint"] == "uvx" and pypi["transport"] == {"type": "stdio"}
    variables = {v["name"]: v for v in pypi["environmentVariables"]}
    assert set(variables) <= SETTING_NAMES
    token = variables["ACEDATACLOUD_API_TOKEN"]
    assert token["isSecret"] is True and token["isRequired"] is True
    for name, variable in variables.items():
        if "default" in variable:
            assert variable["default"] == str(Settings.model_fields[field_of(name)].default), name


def test_the_readme_carries_the_registry_name_for_ownership() -> None:
    # The registry checks that the package's description (the README) names the server.
    readme = (ROOT / "README.md").read_text()
    assert f"mcp-name: {ENTRY['name']}" in readme
    owner = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", PYPROJECT["project"]["urls"]["Homepage"])
    assert owner is not None and ENTRY["name"] == f"io.github.{owner[1]}/{owner[2]}"
    assert ENTRY["repository"]["url"] == PYPROJECT["project"]["urls"]["Homepage"] == MANIFEST["repository"]["url"]


def field_of(env_name: str) -> str:
    (name,) = [name for name, field in Settings.model_fields.items() if field.validation_alias == env_name]
    return name


def test_the_bundles_settings_are_real_settings_with_their_defaults() -> None:
    config = MANIFEST["server"]["mcp_config"]
    user_config = MANIFEST["user_config"]
    assert set(config["env"]) <= SETTING_NAMES
    referenced = {m for value in config["env"].values() for m in re.findall(r"\$\{user_config\.(\w+)\}", value)}
    assert referenced == set(user_config)
    token = user_config["api_token"]
    assert token["sensitive"] is True and token["required"] is True
    assert config["env"]["ACEDATACLOUD_API_TOKEN"] == "${user_config.api_token}"
    # One knob for both waits: a wait above the longest wait would stop the server from starting.
    assert config["env"]["LUMA_WAIT_SECONDS"] == config["env"]["LUMA_MAX_WAIT_SECONDS"] == "${user_config.wait_seconds}"
    wait = user_config["wait_seconds"]
    assert wait["required"] is False and wait["default"] == Settings.model_fields["wait_seconds"].default
    bounds = Settings.model_fields["max_wait_seconds"].metadata
    assert wait["max"] <= min(bound.le for bound in bounds if hasattr(bound, "le"))


def test_the_bundle_runs_the_packages_command_through_uv() -> None:
    server = MANIFEST["server"]
    assert server["type"] == "uv" and MANIFEST["manifest_version"] == "0.4"
    assert (ROOT / server["entry_point"]).is_file()
    command = server["mcp_config"]
    assert command["command"] == "uv" and command["args"][-1] in PYPROJECT["project"]["scripts"]
    python = PYPROJECT["project"]["requires-python"]
    assert MANIFEST["compatibility"]["runtimes"]["python"] == python


@pytest.mark.anyio
async def test_the_bundle_lists_the_tools_the_server_lists() -> None:
    async with Client(create_server(make_settings("http://127.0.0.1:9"))) as client:
        listed = [tool.name for tool in (await client.list_tools()).tools]
    assert [tool["name"] for tool in MANIFEST["tools"]] == listed


def test_the_icon_is_a_512_pixel_png() -> None:
    data = (ROOT / "packaging" / "icon.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (512, 512)


@pytest.mark.parametrize("name", ["Dockerfile", "compose.yaml", "packaging/compose.env.example"])
def test_the_container_files_name_only_real_settings(name: str) -> None:
    text = (ROOT / name).read_text()
    named = set(re.findall(r"\b((?:LUMA|ACEDATACLOUD)_[A-Z0-9_]+)\b", text))
    assert named and named <= SETTING_NAMES, named - SETTING_NAMES


def test_the_container_carries_the_registry_name_and_checks_health() -> None:
    assert f'LABEL io.modelcontextprotocol.server.name="{ENTRY["name"]}"' in DOCKERFILE
    assert "'http://127.0.0.1:8000/health'" in DOCKERFILE and "EXPOSE 8000" in DOCKERFILE
    assert '"--transport", "http"' in DOCKERFILE and '"--port", "8000"' in DOCKERFILE
    assert re.search(r"^USER (?!0\b)\d+$", DOCKERFILE, flags=re.MULTILINE)  # numeric, and not root
    assert DOCKERFILE.count("\nFROM ") + DOCKERFILE.startswith("FROM ") == 2  # build stage, runtime stage


def test_the_readmes_install_links_run_the_package_the_registry_lists() -> None:
    import base64
    from urllib.parse import unquote

    readme = (ROOT / "README.md").read_text()
    (pypi,) = [p for p in ENTRY["packages"] if p["registryType"] == "pypi"]
    cursor = re.search(r"cursor://anysphere\.cursor-deeplink/mcp/install\?name=luma&config=([A-Za-z0-9+/=]+)", readme)
    assert cursor is not None
    assert json.loads(base64.b64decode(cursor[1])) == {
        "command": "uvx", "args": [pypi["identifier"]], "env": {"ACEDATACLOUD_API_TOKEN": "your-token"}
    }  # fmt: skip
    vscode = re.search(r"https://insiders\.vscode\.dev/redirect\?url=([^)\s]+)", readme)
    assert vscode is not None
    link = unquote(vscode[1])
    assert link.startswith("vscode:mcp/install?")
    server = json.loads(unquote(link.removeprefix("vscode:mcp/install?")))
    assert server["command"] == "uvx" and server["args"] == [pypi["identifier"]]
    (prompt,) = server["inputs"]
    assert prompt["password"] is True
    assert server["env"] == {"ACEDATACLOUD_API_TOKEN": "${input:" + prompt["id"] + "}"}
    assert f"-- uvx {pypi['identifier']}`" in readme  # Claude Code
