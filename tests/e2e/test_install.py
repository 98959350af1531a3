"""Every way in, built and run as people would: the wheel and sdist (`make dist`: the standard build
frontend, then twine) installed into a fresh environment and driven over stdio, `uvx` from the built
wheel, the Claude Desktop bundle (`make bundle`: the official mcpb CLI) unpacked and started exactly
as its manifest tells a host, and the container's own commands (Dockerfile, compose.yaml) run
outside a container: the same wheel build from the same files, the same offline install, entry
point, settings and health check, with two replicas on one PostgreSQL ledger.

Each artifact is built once per session. The bundle tests skip (saying why) only where npm cannot be
had, as the Inspector tests do; uv and the build tools are dev dependencies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from mcp import Client, StdioServerParameters

from luma_mcp import __version__
from luma_mcp.core.results import TaskResult
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import CANARY_TOKEN
from ..helpers.http import KEY, client, free_port, http_env
from ..helpers.postgres import fresh_database
from ..helpers.stdio import server_env

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
DEV_BIN = Path(sys.executable).parent  # uv, uvx, build and twine come with the dev extra
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
TOOLS = [tool["name"] for tool in MANIFEST["tools"]]
PACKAGE = "luma-dream-machine-mcp"
FAST = {"LUMA_POLL_INITIAL_SECONDS": "1", "LUMA_POLL_MAX_SECONDS": "1"}


def run(argv: list[str], timeout: float = 300, **options: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **options)
    assert done.returncode == 0, f"{argv[:4]} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """A Makefile target, with this test run's venv (never rebuilt here) and python."""
    venv = DEV_BIN.parent
    return run(["make", "-s", "-C", str(ROOT), f"VENV={venv}", "-o", f"{venv}/bin/.installed",
                f"PYTHON={sys.executable}", *args])  # fmt: skip


async def generate_through(params: StdioServerParameters) -> TaskResult:
    """The round trip a host makes: list the tools, make a video, read its result."""
    async with Client(params) as session:
        assert [tool.name for tool in (await session.list_tools()).tools] == TOOLS
        result = await session.call_tool("generate_video", {"prompt": "a paper boat", "wait_seconds": 15})
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "succeeded" and task.video_url, result
    return task


# ---- the wheel and sdist ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    make("dist", f"DIST={out}")  # python -m build, then twine check --strict (fails the target)
    return out


def only(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def test_the_wheel_ships_the_view_media_and_both_commands(dist: Path) -> None:
    wheel = only(dist, f"luma_dream_machine_mcp-{__version__}-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"luma_dream_machine_mcp-{__version__}.dist-info/entry_points.txt").decode()
    for shipped in ("luma_mcp/server/ui/player.html", "luma_mcp/server/ui/ext-apps/app-with-deps.js",
                    "luma_mcp/server/ui/ext-apps/LICENSE", "luma_mcp/simulator/media/sample.mp4",
                    "luma_mcp/simulator/media/sample.jpg",
                    "luma_mcp/py.typed", "luma_mcp/core/ledger/postgres.py"):  # fmt: skip
        assert shipped in names, shipped
    assert not [name for name in names if "__pycache__" in name or name.startswith(("tests/", "benchmarks/"))]
    assert "luma-mcp = luma_mcp.cli:main" in entry_points and f"{PACKAGE} = luma_mcp.cli:main" in entry_points


def test_the_sdist_ships_the_source_and_no_junk(dist: Path) -> None:
    sdist = only(dist, f"luma_dream_machine_mcp-{__version__}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert {
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "src/luma_mcp/cli.py",
        "src/luma_mcp/server/ui/player.html",
    } <= set(names)
    junk = (".cache/", ".venv/", "test-output/", ".hypothesis/", "dist/", ".mypy_cache/", ".pytest_cache/")
    assert not [n for n in names if n.startswith(junk) or "node_modules" in n or "__pycache__" in n]


async def test_uvx_runs_the_built_wheel_by_the_packages_name(dist: Path) -> None:
    wheel = only(dist, "*.whl")
    uvx = DEV_BIN / "uvx"
    # `uvx luma-dream-machine-mcp` (the registry entry, Claude Code, Cursor, VS Code) runs the
    # command named after the package: here from the wheel just built instead of the index.
    params = StdioServerParameters(
        command=str(uvx),
        args=["--from", str(wheel), PACKAGE, "--simulate", "--simulate-seconds", "0.5"],
        env=server_env(**FAST),
    )
    await generate_through(params)


# ---- the container's commands, outside a container -------------------------------------------------


@dataclass
class Stage:
    copies: list[list[str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's instructions per stage: COPY sources, RUN commands, ENV, and the rest."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "FROM":
            stages.append(Stage())
        elif keyword == "COPY" and not rest.startswith("--from"):
            stages[-1].copies.append(shlex.split(rest))
        elif keyword == "RUN":
            stages[-1].runs.append(re.sub(r"^(--mount=\S+\s+)+", "", rest))
        elif keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                stages[-1].env[name] = value
        else:
            stages[-1].options[keyword] = rest
    return stages


BUILD, RUNTIME = dockerfile_stages()


def in_place(command: str, python: Path, wheels: Path) -> str:
    # What differs outside the container: which python, where the wheels go, and pip's cache (used
    # here, so a session does not download every dependency again).
    return command.replace("python -m", f"{python} -m").replace("/wheels", str(wheels)).replace(" --no-cache-dir", "")


@dataclass
class Installed:
    venv: Path
    seconds: float  # the runtime stage's install, into a fresh environment

    def command(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("container")
    context, wheels, venv = base / "src", base / "wheels", base / "venv"
    context.mkdir()
    for *sources, target in BUILD.copies:  # the build stage sees only what it copies
        destination = context / target
        for source in sources:
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / source, context / Path(target) / source if target.endswith("/") else destination)
    for command in BUILD.runs:
        run(
            ["bash", "-euo", "pipefail", "-c", in_place(command, Path(sys.executable), wheels)],
            cwd=context,
            timeout=600,
        )
    run([sys.executable, "-m", "venv", str(venv)])
    started = time.monotonic()
    for command in RUNTIME.runs:
        if command.startswith("useradd"):
            continue  # the image's user: not something to do to this machine
        run(["bash", "-euo", "pipefail", "-c", in_place(command, venv / "bin" / "python", wheels)], timeout=600)
    return Installed(venv, time.monotonic() - started)


def test_the_runtime_stage_installs_the_build_stages_wheels_offline(installed: Installed) -> None:
    version = run([installed.command("luma-mcp"), "--version"], timeout=60)
    assert version.stdout.strip() == f"luma-mcp {__version__}"
    run([installed.command("python"), "-c", "import psycopg, luma_mcp.core.ledger.postgres"], timeout=60)  # [postgres]
    print(f"installed into a fresh environment in {installed.seconds:.1f} s")


async def test_the_installed_wheel_round_trip_over_stdio(installed: Installed) -> None:
    params = StdioServerParameters(
        command=installed.command("luma-mcp"),
        args=["--simulate", "--simulate-seconds", "0.5"],
        env=server_env(**FAST),
    )
    await generate_through(params)


def entrypoint_argv(port: int) -> list[str]:
    entrypoint = json.loads(RUNTIME.options["ENTRYPOINT"])
    arguments = json.loads(RUNTIME.options["CMD"])
    assert arguments[arguments.index("--port") + 1] == RUNTIME.options["EXPOSE"] == "8000"
    arguments[arguments.index("--port") + 1] = str(port)
    return [*entrypoint, *arguments]


def healthcheck(python: str, port: int) -> int:
    """The image's HEALTHCHECK command, aimed at a port of this machine; its exit code."""
    argv = json.loads(RUNTIME.options["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert argv[0] == "python"
    argv = [python, *(arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in argv[1:])]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


def compose_environment(ledger_url: str, public_url: str) -> dict[str, str]:
    """The replicas' settings from compose.yaml, with .env's values and the test's database."""
    text = (ROOT / "compose.yaml").read_text()
    block = text.split("    environment:\n", 1)[1].split("\n    ulimits:", 1)[0]
    values = dict(re.findall(r"^      ([A-Z_]+): (.+)$", block, flags=re.MULTILINE))
    dotenv = {
        "ACEDATACLOUD_API_TOKEN": CANARY_TOKEN,
        "LUMA_MCP_API_KEYS": KEY,
        "POSTGRES_PASSWORD": "unused",
        "LUMA_MCP_PUBLIC_URL": "https://mcp.example.test",
        "LUMA_MCP_ALLOWED_HOSTS": "mcp.example.test",
    }

    def substitute(value: str) -> str:
        value = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: dotenv[m[1]], value.strip('"'))
        return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m[2], value)

    env = {name: substitute(value) for name, value in values.items()}
    assert env["LUMA_LEDGER_URL"] == "postgresql://luma:unused@db:5432/luma"
    env["LUMA_LEDGER_URL"] = ledger_url  # the compose file's `db` service is this test's PostgreSQL
    env["LUMA_MCP_PUBLIC_URL"] = public_url
    return env


class Replica:
    """The image's entry point and arguments, run from the installed environment."""

    def __init__(self, installed: Installed, env: dict[str, str], data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = entrypoint_argv(self.port)
        # It binds loopback here, not 0.0.0.0 (test_the_image_refuses_to_listen_without_auth runs that).
        argv[argv.index("--host") + 1] = "127.0.0.1"
        image_env = {name: value.replace("/data", str(data)) for name, value in RUNTIME.env.items()}
        self.log = tempfile.NamedTemporaryFile(mode="w+", prefix="luma-replica-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [installed.command(argv[0]), *argv[1:]],
            env={**env, **image_env},
            cwd=data,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def wait_healthy(self, python: str) -> None:
        """Until the image's health check passes; then what /health says, and that keys are asked for."""
        deadline = time.monotonic() + 30
        while healthcheck(python, self.port) != 0:
            assert self.proc.poll() is None, self.stderr()
            assert time.monotonic() < deadline, "no healthy answer within 30 s"
            time.sleep(0.2)
        assert httpx.get(f"{self.url}/health").json() == {"status": "ok", "version": __version__}
        assert httpx.post(f"{self.url}/mcp", json={}).status_code == 401  # compose.yaml's keys hold

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


async def test_two_replicas_as_compose_runs_them_share_one_postgresql_ledger(
    installed: Installed, sim_server: SimulatorServer, postgres_server: str, tmp_path: Path
) -> None:
    ledger_url = fresh_database(postgres_server)
    base = {k: v for k, v in http_env(sim_server).items() if not k.startswith(("ACEDATACLOUD_API_TOKEN", "LUMA_"))}
    base.update(FAST)
    python = installed.command("python")
    replicas = []
    try:
        for number in (1, 2):
            data = tmp_path / f"data{number}"
            data.mkdir()
            replica = Replica(installed, {**base, **compose_environment(ledger_url, "http://127.0.0.1:8080")}, data)
            replicas.append(replica)
        for replica in replicas:
            replica.wait_healthy(python)
        first, second = replicas
        async with client(first.url, KEY) as session:
            made = await session.call_tool("generate_video", {"prompt": "a paper boat", "wait_seconds": 0})
        task_id = made.structured_content["task_id"]
        async with client(second.url, KEY) as session:
            found = await session.call_tool("get_task", {"task_id": task_id, "wait_seconds": 15})
        assert found.structured_content is not None
        (task,) = found.structured_content["tasks"]
        assert task["task_id"] == task_id and task["status"] == "succeeded"
        assert sim_server.simulator.tasks[task_id].owner == CANARY_TOKEN  # the compose file's token
    finally:
        for replica in replicas:
            replica.stop()
    # Once the server is gone, the health check fails, so the orchestrator would replace it.
    assert healthcheck(python, replicas[0].port) != 0


def test_the_image_refuses_to_listen_without_auth(installed: Installed, tmp_path: Path) -> None:
    # The image's exact command, with no keys and no passthrough: it must not bind 0.0.0.0 open.
    argv = entrypoint_argv(free_port())
    done = subprocess.run(
        [installed.command(argv[0]), *argv[1:]],
        env={**server_env(), **{k: v.replace("/data", str(tmp_path)) for k, v in RUNTIME.env.items()}},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "Refusing to listen on 0.0.0.0 without authentication" in done.stderr


# ---- the Claude Desktop bundle -----------------------------------------------------------------------

MCPB_PACKAGE = ROOT / ".cache" / "mcpb" / "node_modules" / "@anthropic-ai" / "mcpb"
# What a host does with a manifest: the CLI's own library fills in mcp_config (paths, user settings).
RESOLVE = """
const [library, folder, userConfig] = process.argv.slice(1);
const { getMcpConfigForManifest } = await import(library);
const { readFileSync } = await import("node:fs");
const manifest = JSON.parse(readFileSync(`${folder}/manifest.json`, "utf8"));
const config = await getMcpConfigForManifest({
  manifest, extensionPath: folder, systemDirs: {}, userConfig: JSON.parse(userConfig), pathSeparator: "/",
});
process.stdout.write(JSON.stringify(config ?? null));
"""


@dataclass
class Bundle:
    path: Path
    registry_entry: dict[str, Any]
    unpacked: Path

    def host_config(self, user_config: dict[str, Any]) -> Any:
        library = MCPB_PACKAGE / "dist" / "shared" / "config.js"
        done = run(["node", "--input-type=module", "-e", RESOLVE, str(library), str(self.unpacked),
                    json.dumps(user_config)], timeout=60)  # fmt: skip
        return json.loads(done.stdout)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/node not found: install Node.js to build the desktop bundle with the mcpb CLI")
    out = tmp_path_factory.mktemp("bundle")
    built = make("bundle", f"DIST={out}", f"BUNDLE_STAGE={out / 'stage'}")
    assert "Manifest schema validation passes!" in built.stdout  # `mcpb validate`, before packing
    unpacked = out / "unpacked"
    run([str(ROOT / ".cache" / "mcpb" / "node_modules" / ".bin" / "mcpb"), "unpack",
         str(out / "luma-mcp.mcpb"), str(unpacked)], timeout=120)  # fmt: skip
    return Bundle(out / "luma-mcp.mcpb", json.loads((out / "server.json").read_text()), unpacked)


def test_the_manifest_uses_the_newest_version_the_pinned_cli_knows(bundle: Bundle) -> None:
    constants = (MCPB_PACKAGE / "dist" / "shared" / "constants.js").read_text()
    latest = re.search(r'LATEST_MANIFEST_VERSION = "([\d.]+)"', constants)
    assert latest is not None and MANIFEST["manifest_version"] == latest[1]


def test_the_bundle_holds_the_package_and_nothing_else(bundle: Bundle) -> None:
    with zipfile.ZipFile(bundle.path) as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"manifest.json", "icon.png", "pyproject.toml", "README.md", "LICENSE", "src"}
    assert "src/luma_mcp/server/ui/ext-apps/app-with-deps.js" in names and not [n for n in names if "__pycache__" in n]
    print(f"bundle: {bundle.path.stat().st_size / 1000:.0f} kB")


def test_the_release_entry_names_the_bundles_sha256(bundle: Bundle) -> None:
    schema = json.loads((ROOT / "schemas" / "server.schema.json").read_text())
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER).validate(
        bundle.registry_entry
    )
    (package,) = [p for p in bundle.registry_entry["packages"] if p["registryType"] == "mcpb"]
    assert package["fileSha256"] == hashlib.sha256(bundle.path.read_bytes()).hexdigest()


def test_a_host_starts_nothing_until_it_has_the_token(bundle: Bundle) -> None:
    assert bundle.host_config({}) is None  # the token is required: the host asks for it first


async def test_the_unpacked_bundle_runs_as_its_manifest_says(bundle: Bundle, sim_server: SimulatorServer) -> None:
    config = bundle.host_config({"api_token": CANARY_TOKEN})
    assert config["env"] == {
        "ACEDATACLOUD_API_TOKEN": CANARY_TOKEN, "LUMA_WAIT_SECONDS": "45", "LUMA_MAX_WAIT_SECONDS": "45"
    }  # fmt: skip
    assert str(bundle.unpacked) in config["args"]
    command = shutil.which(config["command"], path=f"{DEV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert command is not None, f"{config['command']} not found"
    params = StdioServerParameters(
        command=command,
        args=config["args"],
        env=server_env(**config["env"], ACEDATACLOUD_API_BASE_URL=sim_server.url, **FAST),
    )
    task = await generate_through(params)
    assert sim_server.simulator.tasks[task.task_id].owner == CANARY_TOKEN  # the token the host was given
