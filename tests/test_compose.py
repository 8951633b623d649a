"""docker-compose.yml, the Dockerfile and node_configs/ agree with each other and with the CLI.

No Docker engine runs here, so this reads the files: every node config loads with the real
config loader and the peers form a full mesh by compose service name; every `liaison`
invocation in the compose file is a command the CLI has, with options it accepts (checked
by running it with --help, which click answers only after parsing every option); each node
service serves the config of the node it is named after, with its certificates and data
where the config says.
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from liaison_net import config
from liaison_net.cli.main import cli
from liaison_net.store.postgres import check_dsn

ROOT = Path(__file__).resolve().parent.parent
NODE_IDS = ("be", "nl", "lu", "de-nw")
APP = PurePosixPath("/app")  # the image's WORKDIR: the repository root inside the container


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def configs() -> dict[str, config.NodeConfig]:
    return {nid: config.load(ROOT / "node_configs" / f"{nid}.toml") for nid in NODE_IDS}


def _liaison_args(command: object) -> list[list[str]]:
    """Every `liaison ...` invocation in a compose command (exec form or a shell script)."""
    if isinstance(command, list) and command[:1] == ["liaison"]:
        return [[str(a) for a in command[1:]]]
    if isinstance(command, list) and command[:2] in (["sh", "-c"], ["sh", "-ec"]):
        script = str(command[2])
    elif isinstance(command, str):
        script = command
    else:
        raise AssertionError(f"unexpected command form: {command!r}")
    found = []
    for line in script.splitlines():
        for part in line.replace("&&", "||").split("||"):
            words = shlex.split(part, comments=True)
            if words[:1] == ["exec"]:  # the script's last step: the node replaces the shell
                words = words[1:]
            if words[:1] == ["liaison"]:
                found.append(words[1:])
    return found


def _run_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, f"`liaison {shlex.join(args)}` is not a valid command:\n" \
                                  f"{result.output}"


def _option(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def _in_repo(container_path: str) -> Path:
    """A path inside the container (relative to /app, or absolute under it) in this repo."""
    path = APP / container_path
    return ROOT / path.relative_to(APP)


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (volume, read_only)."""
    out = {}
    for spec in service.get("volumes", []):
        parts = str(spec).split(":")
        out[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    return out


# --- node_configs/ ------------------------------------------------------------------------------


def test_every_node_config_loads(configs: dict[str, config.NodeConfig]) -> None:
    for nid, cfg in configs.items():
        assert cfg.id == nid
        assert cfg.cert_dir.resolve() == (ROOT / "certs" / nid).resolve()
        assert cfg.data_dir.resolve() == (ROOT / "data" / nid).resolve()
        assert cfg.federation.host == cfg.client.host == "0.0.0.0"
    ports = [p for cfg in configs.values() for p in (cfg.federation.port, cfg.client.port)]
    assert len(set(ports)) == len(ports), "every listener needs its own port"


def test_peers_form_a_full_mesh_by_service_name(configs: dict[str, config.NodeConfig]) -> None:
    for nid, cfg in configs.items():
        assert {p.id for p in cfg.peers} == set(NODE_IDS) - {nid}
        for peer in cfg.peers:
            # The peer's compose service name and the port its federation listener uses.
            assert peer.url == f"https://{peer.id}:{configs[peer.id].federation.port}"


# --- docker-compose.yml -------------------------------------------------------------------------


def test_one_service_per_node_plus_init(compose: dict[str, Any]) -> None:
    default = {name for name, service in compose["services"].items()
               if "profiles" not in service}
    assert default == {"init", *NODE_IDS}
    for nid in NODE_IDS:
        assert compose["services"][nid]["depends_on"]["init"]["condition"] == \
            "service_completed_successfully"


def test_every_liaison_command_exists(compose: dict[str, Any]) -> None:
    seen = 0
    for name, service in compose["services"].items():
        if service["image"] != "liaison_net:latest":
            continue  # the postgres service (profile "postgres")
        for args in _liaison_args(service["command"]):
            _run_help(args)
            seen += 1
        assert _liaison_args(service["command"]), f"service {name} runs no liaison command"
    # init-network, init-node x4, serve x4, nl's second worker (profile "workers") and
    # nl's two workers on PostgreSQL (profile "postgres")
    assert seen == 1 + len(NODE_IDS) + len(NODE_IDS) + 1 + 2


def test_init_creates_the_ca_and_every_node_idempotently(compose: dict[str, Any]) -> None:
    init = compose["services"]["init"]
    commands = _liaison_args(init["command"])
    networks = [a for a in commands if a[:2] == ["admin", "init-network"]]
    nodes = {a[2]: a for a in commands if a[:2] == ["admin", "init-node"]}
    assert len(networks) == 1 and set(nodes) == set(NODE_IDS)
    ca_dir = _option(networks[0], "--dir")
    mounts = _mounts(init)
    script = init["command"][2]
    for nid, args in nodes.items():
        assert _option(args, "--ca-dir") == ca_dir
        certs = _option(args, "--dir")
        assert certs in mounts, "init must write node certificates into a volume"
        # The service name is a host name peers use; the certificate must carry it.
        hosts = [args[i + 1] for i, a in enumerate(args) if a == "--host"]
        assert nid in hosts
        # Skipped when the node's certificates exist: `up` can be run again.
        assert f"test -f {certs}/{nid}/" in script
    assert f"test -f {ca_dir}/ca.crt" in script
    assert ca_dir in mounts


def test_node_services_serve_their_own_config(compose: dict[str, Any],
                                              configs: dict[str, config.NodeConfig]) -> None:
    services = compose["services"]
    init_certs = _option(next(a for a in _liaison_args(services["init"]["command"])
                              if a[:2] == ["admin", "init-node"]), "--dir")
    init_volume = _mounts(services["init"])[init_certs][0]
    ca_dir = _option(next(a for a in _liaison_args(services["init"]["command"])
                          if a[:2] == ["admin", "init-network"]), "--dir")
    for nid in NODE_IDS:
        service = services[nid]
        [args] = _liaison_args(service["command"])
        assert args[:2] == ["node", "serve"]
        path = _in_repo(_option(args, "--config"))
        assert path.is_file(), f"{path} does not exist"
        cfg = config.load(path)
        assert cfg.id == nid, f"service {nid} serves the config of node {cfg.id}"
        mounts = _mounts(service)
        # Certificates: the volume init wrote, read-only, holding this node's directory.
        certs_target = str(APP / cfg.cert_dir.resolve().parent.relative_to(ROOT))
        assert mounts.get(certs_target) == (init_volume, True)
        assert str(PurePosixPath(init_certs) / nid) == str(APP / cfg.cert_dir.resolve()
                                                              .relative_to(ROOT))
        # The CA private key is never mounted into a node.
        assert ca_dir not in mounts
        # Data: a volume of its own at the config's data_dir.
        data_target = str(APP / cfg.data_dir.resolve().relative_to(ROOT))
        volume, read_only = mounts[data_target]
        assert volume == f"data-{nid}" and not read_only
        assert volume in compose["volumes"]
        # The officer API is published on the port the config listens on.
        assert f"{cfg.client.port}:{cfg.client.port}" in service["ports"]


def test_the_workers_profile_runs_a_second_worker_of_nl(
        compose: dict[str, Any], configs: dict[str, config.NodeConfig]) -> None:
    """Issue 17: nl-2 serves nl's own config on nl's data volume (one database, two
    workers), its officer API on another host port; every peer can fail over to it."""
    services = compose["services"]
    worker = services["nl-2"]
    assert worker["profiles"] == ["workers"]
    assert _liaison_args(worker["command"]) == _liaison_args(services["nl"]["command"])
    assert _mounts(worker) == _mounts(services["nl"])
    assert worker["depends_on"]["nl"]["condition"] == "service_healthy"
    assert worker["ports"] == [f"7512:{configs['nl'].client.port}"]
    for cfg in configs.values():
        for peer in cfg.peers:
            if peer.id == "nl":
                assert peer.urls == (peer.url, f"https://nl-2:{configs['nl'].federation.port}")


def test_the_postgres_profile_runs_nl_as_two_workers_on_a_postgres_service(
        compose: dict[str, Any], configs: dict[str, config.NodeConfig],
        tmp_path: Path) -> None:
    """Issue 17: nl-pg and nl-pg-2 serve one config on the `postgres` service's database,
    answer to the names the peers list for nl (`nl`, `nl-2`), and get the password from a
    secret file, never from the TOML or the environment."""
    services = compose["services"]
    db, workers = services["postgres"], [services["nl-pg"], services["nl-pg-2"]]
    for service in (db, *workers):
        assert service["profiles"] == ["postgres"]
    secret = db["environment"]["POSTGRES_PASSWORD_FILE"]
    assert secret == "/run/secrets/nl_pg_password" and db["secrets"] == ["nl_pg_password"]
    assert compose["secrets"]["nl_pg_password"] == {"file": "./secrets/nl-pg-password"}
    assert not any("PASSWORD" in key and not key.endswith("_FILE")
                   for key in db["environment"])
    assert {_mounts(db)["/var/lib/postgresql/data"][0]} <= set(compose["volumes"])
    assert db["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]

    toml_path = ROOT / "node_configs" / "nl-pg.toml"
    raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    store = raw["store"]
    assert store["backend"] == "postgresql"
    dsn = check_dsn(store["dsn"])  # refuses a DSN that holds a password
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    assert params["host"] == "postgres"
    assert (params["dbname"], params["user"]) == (db["environment"]["POSTGRES_DB"],
                                                  db["environment"]["POSTGRES_USER"])
    # The same node as nl.toml: only [store] differs (the workers take nl's names).
    nl = tomllib.loads((ROOT / "node_configs" / "nl.toml").read_text(encoding="utf-8"))
    assert {k: v for k, v in raw.items() if k != "store"} == nl
    # Loads with the real loader once the password file is where the worker puts it.
    password = tmp_path / "pg-password"
    password.write_text("x", encoding="utf-8")
    password.chmod(0o600)
    loaded = config.parse({**raw, "store": {**store, "password_file": str(password)}},
                          toml_path)
    assert loaded.id == "nl" and loaded.store.backend == "postgresql"

    aliases = []
    for worker in workers:
        [args] = _liaison_args(worker["command"])
        assert args[:2] == ["node", "serve"]
        assert _in_repo(_option(args, "--config")) == toml_path
        script = worker["command"][2]
        # The secret copied into the worker's own tmpfs with mode 0600 before the node starts.
        assert f"install -m 600 /run/secrets/nl_pg_password {store['password_file']}" in script
        assert script.index("install") < script.index("exec liaison")
        assert worker["secrets"] == ["nl_pg_password"]
        assert worker["tmpfs"] == [f"{PurePosixPath(store['password_file']).parent}"
                                   ":uid=10001,mode=0700"]
        assert "environment" not in worker
        mounts = _mounts(worker)
        assert mounts["/app/certs"] == ("certs", True)
        volume, read_only = mounts[str(APP / "data" / "nl")]
        assert volume.startswith("data-nl-pg") and volume in compose["volumes"]
        assert not read_only
        assert worker["ports"][0].endswith(f":{configs['nl'].client.port}")
        aliases += worker["networks"]["default"]["aliases"]
    assert workers[0]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert workers[1]["depends_on"]["nl-pg"]["condition"] == "service_healthy"
    assert _mounts(workers[0]) != _mounts(workers[1])  # a data volume each
    # The peers reach the workers at the names they list for nl.
    for cfg in configs.values():
        for peer in cfg.peers:
            if peer.id == "nl":
                assert [urlsplit(u).hostname for u in peer.urls] == aliases == ["nl", "nl-2"]


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_installs_the_package_where_compose_expects_it() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert lines[[line.startswith("FROM") for line in lines].index(True)] == \
        "FROM python:3.11-slim"
    assert f"WORKDIR {APP}" in lines
    assert "RUN pip install ." in lines
    assert any(line.startswith("COPY node_configs") for line in lines)
