"""The docker-compose stack: its structure, its secrets hygiene, and the warehouse accounts' rights.

No Docker engine is needed: `docker-compose config` validates the file on its own, the YAML is
checked with PyYAML, the start-up script (docker/stack/bootstrap.py) is called directly, the SFTP
server's config is checked with `sshd -t`, and the MySQL grants are applied to the test server
to prove the loader can do its work with them and the analyst can only read.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from session_stream.runs import policy

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
GRANTS_SQL = REPO / "docker/mysql/initdb.d/02-warehouse.sql"
USERS_SH = REPO / "docker/mysql/initdb.d/01-users.sh"
SSHD_CONFIG = REPO / "docker/sftp/sshd_config"

ONE_SHOT = {"stack-init", "airflow-init", "cli"}
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery-worker",
    "flower": "celery",
}
TEST_FAKES = {"mailsink", "fake-monetate"}
# What the loader needs on the whole warehouse schema (02-warehouse.sql says why), and what it
# may have: data rights only, no DDL (the owner migrates; the lookup tables' swap rights are
# table-level, granted by airflow-init).
LOADER_NEEDS = {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE TEMPORARY TABLES"}
LOADER_MAY_HAVE = LOADER_NEEDS | {"SHOW VIEW", "LOCK TABLES"}
OWNER_NEEDS = {"CREATE", "DROP", "ALTER", "INDEX", "CREATE VIEW"}
ANALYST_MAY_HAVE = {"SELECT", "SHOW VIEW"}


def _compose_binary() -> str | None:
    return shutil.which("docker-compose")


@pytest.fixture(scope="module")
def raw() -> dict:
    """docker-compose.yaml as written (anchors merged by PyYAML, ${VARS} not interpolated)."""
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(raw) -> dict:
    return raw["services"]


def _env_lines(path: Path) -> list[tuple[str, str]]:
    return [
        tuple(line.split("=", 1))
        for line in path.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    ]


def env_example() -> dict[str, str]:
    return dict(_env_lines(ENV_EXAMPLE))


def _command_lines(service: dict) -> list[str]:
    """Everything a service runs as a process: command, entrypoint, health check."""
    parts = []
    for key in ("command", "entrypoint"):
        value = service.get(key)
        parts += [value] if isinstance(value, str) else list(value or [])
    test = (service.get("healthcheck") or {}).get("test")
    parts += [test] if isinstance(test, str) else list(test or [])
    return [str(p) for p in parts]


def _run_compose(
    *args: str, env: dict | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    binary = _compose_binary()
    if binary is None:
        pytest.skip(
            "docker-compose is not installed (Debian: apt-get install docker-compose); it validates without an engine"
        )
    return subprocess.run(
        [binary, "--project-directory", str(REPO), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        env=env if env is not None else {**os.environ},
        cwd=cwd,
        timeout=120,
    )


# ---- the compose file -------------------------------------------------------------------------


def test_compose_file_is_valid_with_the_example_settings():
    result = _run_compose("--env-file", str(ENV_EXAMPLE), "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_file_is_valid_with_every_profile():
    result = _run_compose(
        "--env-file",
        str(ENV_EXAMPLE),
        "--profile",
        "celery",
        "--profile",
        "flower",
        "--profile",
        "tools",
        "config",
        "-q",
    )
    assert result.returncode == 0, result.stderr


def test_a_missing_secret_stops_compose_with_a_message_naming_it(tmp_path):
    """Secrets have no defaults: without .env, compose refuses to start and says what to set."""
    env = {k: v for k, v in os.environ.items() if k not in env_example()}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _run_compose("--env-file", str(empty), "config", "-q", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert re.search(r"set \w+_(PASSWORD|KEY|SECRET) in \.env", result.stderr), result.stderr


def test_every_long_running_service_has_a_healthcheck(services):
    long_running = set(services) - ONE_SHOT
    assert long_running >= {"postgres", "mysql", "sftp", "redis", *AIRFLOW_COMPONENTS}
    missing = sorted(
        name for name in long_running if not (services[name].get("healthcheck") or {}).get("test")
    )
    assert missing == []
    for name in long_running:
        assert services[name].get("restart") == "unless-stopped", name


def test_health_checks_do_not_count_on_hostname_in_their_environment(services):
    """podman runs a health check without HOSTNAME in its environment: the worker's check pinged
    `celery@` and the stack never turned healthy; the jobs checks matched any host."""
    for name, service in services.items():
        test = " ".join((service.get("healthcheck") or {}).get("test") or [])
        assert "HOSTNAME" not in test, name
    for name in ("airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["healthcheck"]["test"][-1] == "--local", name


def test_one_shot_services_run_once(services):
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no", name
        assert "healthcheck" not in services[name], name


def test_airflow_components_wait_for_postgres_and_airflow_init(services):
    for name, command in AIRFLOW_COMPONENTS.items():
        service = services[name]
        assert service["command"][0] == command, name
        depends = service["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name


def test_every_dependency_waits_for_health_or_completion(services):
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec == {"condition": wanted}, f"{name} -> {dep}"


def test_airflow_init_waits_for_the_databases_and_the_keys(services):
    depends = services["airflow-init"]["depends_on"]
    assert depends == {
        "postgres": {"condition": "service_healthy"},
        "mysql": {"condition": "service_healthy"},
        "stack-init": {"condition": "service_completed_successfully"},
    }
    # the SSH keys, and the TLS certificate mysql starts with
    for name in ("sftp", "mysql"):
        assert services[name]["depends_on"] == {
            "stack-init": {"condition": "service_completed_successfully"}
        }


def test_airflow_is_3_3_2_on_postgres_with_local_executor_by_default(raw, services):
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        "postgresql+psycopg2://airflow:${POSTGRES_PASSWORD"
    )
    assert services["postgres"]["image"].startswith("postgres:")
    assert _pins(REPO / "requirements.txt")["apache-airflow"] == "3.3.2"


def test_mysql_is_8_4_with_local_infile_utf8mb4_and_tls(services):
    mysql = services["mysql"]
    assert mysql["image"] == "mysql:8.4"
    assert "--local-infile=1" in mysql["command"]
    assert "--character-set-server=utf8mb4" in mysql["command"]
    assert "--skip-log-bin" in mysql["command"]  # MySQL 8.4 logs every loaded row otherwise
    for option in ("ssl-ca", "ssl-cert", "ssl-key"):
        assert any(c.startswith(f"--{option}=/etc/mysql-tls/") for c in mysql["command"]), option
    assert "mysql-tls:/etc/mysql-tls:ro" in mysql["volumes"]
    assert any(v.endswith(":/docker-entrypoint-initdb.d:ro") for v in mysql["volumes"])
    # root cannot log in over the network
    assert mysql["environment"]["MYSQL_ROOT_HOST"] == "localhost"


def test_no_mysql_only_collation_is_named():
    """MySQL 8.4 defaults to utf8mb4_0900_ai_ci anyway; naming it stopped MariaDB from starting
    (the first run on the stand-ins), and would stop any MySQL-compatible server without it."""
    for path in (COMPOSE, GRANTS_SQL):
        assert "0900" not in re.sub(r"(--|#)[^\n]*", "", path.read_text()), path


def test_every_warehouse_account_requires_tls():
    users = USERS_SH.read_text()
    created = re.findall(r"CREATE USER .*?;", users, re.S)
    assert len(created) == 3
    assert all("REQUIRE SSL" in statement for statement in created), created


def test_celery_profile_adds_redis_and_workers(services):
    assert services["airflow-worker"]["profiles"] == ["celery"]
    # The worker runs on the executor .env sets for everyone (bootstrap.py celery-worker refuses
    # to start unless it is Celery): a worker that forced Celery for itself alone waited for ever.
    assert services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == (
        "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    )
    assert services["airflow-worker"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    # --profile flower alone starts the redis it needs
    assert services["flower"]["profiles"] == ["flower"]
    assert set(services["redis"]["profiles"]) == {"celery", "flower"}
    assert {s: services[s]["profiles"] for s in TEST_FAKES} == {s: ["test"] for s in TEST_FAKES}
    # everything else starts without a profile
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default == {
        "postgres",
        "mysql",
        "stack-init",
        "sftp",
        "airflow-init",
        *list(AIRFLOW_COMPONENTS)[:4],
    }


def test_one_image_built_once_from_the_runtime_lock(services):
    """One build serves every Airflow service (the first `up --build` built it once per service,
    21 minutes); the image holds the runtime locks, never the test tools."""
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE.read_text()
    builders = {name for name, service in services.items() if "build" in service}
    assert builders == {"stack-init", "sftp"}
    assert services["stack-init"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    image = services["stack-init"]["image"]
    for name in [*AIRFLOW_COMPONENTS, "airflow-init", "cli", *TEST_FAKES]:
        assert services[name]["image"] == image, name
        assert services[name]["pull_policy"] == "never", name
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11|PYTHON_IMAGE=python:3\.11", dockerfile, re.M)
    assert "--require-hashes" in dockerfile
    assert "-r /tmp/locks/requirements.txt -r /tmp/locks/requirements-stack.txt" in dockerfile
    instructions = "\n".join(ln for ln in dockerfile.splitlines() if not ln.startswith("#"))
    assert "requirements-dev" not in instructions
    # the dependencies' layer comes before any source is copied in
    assert dockerfile.index("requirements-stack.txt") < dockerfile.index("COPY include")


def _pins(path: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", path.read_text(), re.M)
    return {name.lower().replace("_", "-"): version for name, version in found}


def test_the_runtime_lock_holds_no_test_tool_and_every_lock_has_hashes():
    runtime, dev = REPO / "requirements.txt", REPO / "requirements-dev.txt"
    assert _pins(runtime)["apache-airflow"] == "3.3.2"
    assert not {"pytest", "pytest-timeout", "ruff", "moto", "aiosmtpd"} & set(_pins(runtime))
    assert {"pytest", "ruff", "moto", "aiosmtpd"} <= set(_pins(dev))
    for lock in (runtime, dev, REPO / "docker/requirements-stack.txt"):
        pins = _pins(lock)
        hashed = re.findall(
            r"^[A-Za-z0-9_.\-]+(?:\[[^\]]*\])?==\S+ \\\n\s+--hash=sha256:", lock.read_text(), re.M
        )
        assert len(hashed) == len(pins), f"{lock.name}: every pin needs its hashes"
    # a package both locks pin has one version: make setup installs them together
    drift = {
        n: (v, _pins(runtime)[n]) for n, v in _pins(dev).items() if _pins(runtime).get(n, v) != v
    }
    assert drift == {}, "recompile requirements-dev.txt (command at the top of requirements-dev.in)"


def test_stack_lock_pins_the_same_versions_as_the_main_lock():
    """docker/requirements-stack.txt is compiled against requirements.txt; a drift breaks the build."""

    main, stack = _pins(REPO / "requirements.txt"), _pins(REPO / "docker/requirements-stack.txt")
    assert {
        "apache-airflow-providers-postgres",
        "apache-airflow-providers-celery",
        "apache-airflow-providers-fab",
    } <= set(stack)
    drift = {
        name: (main[name], stack[name])
        for name in main.keys() & stack.keys()
        if main[name] != stack[name]
    }
    assert drift == {}, (
        "recompile docker/requirements-stack.txt (command at the top of docker/requirements-stack.in)"
    )


def test_source_folders_are_mounted_read_only_into_airflow(services):
    for name in [*AIRFLOW_COMPONENTS, "airflow-init"]:
        volumes = services[name]["volumes"]
        for folder in ("dags", "plugins", "include"):
            assert f"./{folder}:/opt/airflow/{folder}:ro" in volumes, (name, folder)


def test_no_secret_on_any_command_line(services):
    secrets = {
        name: value
        for name, value in env_example().items()
        if re.search(r"PASSWORD|SECRET|KEY", name)
    }
    assert len(secrets) >= 8
    for name, service in services.items():
        for line in _command_lines(service):
            assert not re.search(r"\$\{?\w*(PASSWORD|SECRET|KEY|TOKEN)", line), (name, line)
            assert not re.search(r"(^|\s)(-p\S|--password)", line), (name, line)
            for value in secrets.values():
                assert value not in line, (name, line)


def test_no_secret_on_a_command_line_after_interpolation():
    """The same, on the config compose actually runs (anchors merged, .env values filled in)."""
    result = _run_compose(
        "--env-file", str(ENV_EXAMPLE), "--profile", "celery", "--profile", "flower", "config"
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    secrets = [v for k, v in env_example().items() if re.search(r"PASSWORD|SECRET|KEY", k)]
    for name, service in resolved.items():
        for line in _command_lines(service):
            assert not any(secret in line for secret in secrets), (name, line)


def test_warehouse_and_sftp_secrets_reach_airflow_init_only(services):
    """Long-running Airflow services get Airflow's own secrets; connection secrets stay in the metastore."""
    for name in [*AIRFLOW_COMPONENTS, "cli"]:
        names = set(services[name]["environment"])
        assert "WAREHOUSE_OWNER_PASSWORD" not in names, name
        if name == "cli":
            continue
        assert (
            not {
                "WAREHOUSE_LOADER_PASSWORD",
                "SFTP_PASSWORD",
                "SMTP_PASSWORD",
                "AWS_SECRET_ACCESS_KEY",
            }
            & names
        ), name
    assert "WAREHOUSE_LOADER_PASSWORD" in services["airflow-init"]["environment"]
    assert "WAREHOUSE_OWNER_PASSWORD" in services["airflow-init"]["environment"]


def test_env_example_documents_every_setting_the_compose_file_reads():
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))  # $${X}: the container's own
    documented = set(re.findall(r"^#?(\w+)=", ENV_EXAMPLE.read_text(), re.M))
    assert used - documented == set()


def test_published_ports_bind_to_loopback_by_default(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:"), (name, port)


# ---- the MySQL accounts -----------------------------------------------------------------------


def grant_statements(sql: str) -> list[tuple[set[str], str, str, str]]:
    """(privileges, on, to, the rest) of each GRANT in an SQL script."""
    sql = re.sub(r"--[^\n]*", "", sql)
    grants = []
    for statement in sql.split(";"):
        statement = " ".join(statement.split())
        m = re.match(r"GRANT (.+?) ON (\S+) TO (\S+)(.*)$", statement, re.I)
        if m:
            privileges = {p.strip().upper() for p in m.group(1).split(",")}
            grants.append((privileges, m.group(2), m.group(3), m.group(4).strip()))
    return grants


def test_loader_gets_only_what_it_needs_on_the_warehouse_schema():
    grants = [g for g in grant_statements(GRANTS_SQL.read_text()) if g[2] == "'loader'@'%'"]
    assert grants, "no GRANT to loader"
    granted = set()
    for privileges, on, _to, rest in grants:
        assert on == "`warehouse`.*", (
            f"loader must have no global or other-schema rights, got ON {on}"
        )
        assert "WITH GRANT OPTION" not in rest.upper()
        granted |= privileges
    assert "ALL" not in granted and "ALL PRIVILEGES" not in granted
    assert LOADER_NEEDS <= granted <= LOADER_MAY_HAVE, granted


def test_owner_may_change_and_grant_on_the_warehouse_schema_only():
    grants = [g for g in grant_statements(GRANTS_SQL.read_text()) if g[2] == "'owner'@'%'"]
    assert grants
    for privileges, on, _to, _rest in grants:
        assert on == "`warehouse`.*"
        assert privileges >= OWNER_NEEDS
        assert "ALL" not in privileges and "FILE" not in privileges


def test_analyst_is_granted_reads_after_init_db_never_the_rejects():
    from session_stream import tables
    from session_stream.warehouse.privileges import grant_statements as generated

    # Nothing schema-wide at the first start: SELECT on warehouse.* would cover the raw lines.
    assert [g for g in grant_statements(GRANTS_SQL.read_text()) if g[2] == "'analyst'@'%'"] == []
    for privileges, on, to, rest in grant_statements(
        "\n".join(generated("warehouse", analyst="analyst"))
    ):
        assert to == "'analyst'@'%'" and privileges <= ANALYST_MAY_HAVE
        assert on.startswith("`warehouse`.`") and "GRANT OPTION" not in rest.upper()
        assert on not in (
            f"`warehouse`.`{tables.REJECTS_TABLE}`",
            f"`warehouse`.`{tables.REJECT_PARTS_TABLE}`",
            f"`warehouse`.`{tables.LEDGER_TABLE}`",
        )


def test_nothing_else_is_granted_and_users_script_grants_nothing():
    assert {g[2] for g in grant_statements(GRANTS_SQL.read_text())} == {
        "'owner'@'%'",
        "'loader'@'%'",
    }
    users = USERS_SH.read_text()
    assert not re.search(r"^\s*GRANT\b", users, re.M | re.I)
    # passwords come from the environment, never written in the file
    assert re.findall(r"IDENTIFIED BY (\$\(.+?\))", users) == [
        '$(_warehouse_sql_string "$WAREHOUSE_OWNER_PASSWORD")',
        '$(_warehouse_sql_string "$WAREHOUSE_LOADER_PASSWORD")',
        '$(_warehouse_sql_string "$WAREHOUSE_ANALYST_PASSWORD")',
    ]


@pytest.fixture
def accounts():
    """02-warehouse.sql applied on the test server to throwaway accounts and schema."""
    from conftest import TEST_SERVER

    from session_stream.warehouse import db

    tag = uuid.uuid4().hex[:8]
    schema = f"ss_wh_{tag}"
    users = {role: f"ss_{role[:2]}_{tag}" for role in ("owner", "loader", "analyst")}
    password = "pw-" + tag
    root = db.connect(TEST_SERVER, database=False)
    cur = root.cursor()
    created = []
    try:
        cur.execute(f"CREATE DATABASE `{schema}` CHARACTER SET utf8mb4")
        for user in users.values():
            cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
            created.append(user)
        for privileges, _on, to, rest in grant_statements(GRANTS_SQL.read_text()):
            user = users[to.split("'")[1]]
            cur.execute(
                f"GRANT {', '.join(sorted(privileges))} ON `{schema}`.* TO '{user}'@'%' {rest}"
            )
        base = db.DbUrl.parse(TEST_SERVER)
        yield {
            "users": users,
            **{
                role: f"mysql://{user}:{password}@{base.host}:{base.port}/{schema}"
                for role, user in users.items()
            },
        }
    finally:
        for user in created:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cur.execute(f"DROP DATABASE IF EXISTS `{schema}`")
        root.close()


@pytest.mark.integration
def test_the_stacks_grants_let_each_account_do_its_job_and_no_more(
    accounts, tmp_path, metadata_server, metadata_client_factory
):
    """What airflow-init does, as the accounts 02-warehouse.sql makes: the owner runs init-db
    and grants; the loader loads (LOAD DATA LOCAL) and swaps a lookup table in; the analyst
    reads views but neither the rejected lines nor anything it could change."""
    from datetime import date

    import MySQLdb

    from session_stream import tables
    from session_stream.drop.sample import write_drop
    from session_stream.metadata.refresh import refresh_lookup
    from session_stream.runs.pipeline import load_files
    from session_stream.warehouse import db, privileges
    from session_stream.warehouse.load import Loader

    owner = db.connect(accounts["owner"])
    privileges.migrate_if_pending(owner)
    privileges.apply_grants(
        owner,
        privileges.grant_statements(
            db.DbUrl.parse(accounts["owner"]).database,
            loader=accounts["users"]["loader"],
            analyst=accounts["users"]["analyst"],
        ),
    )
    owner.close()

    paths = write_drop(
        tmp_path / "drop", date(2026, 11, 1), sessions=40, files=2, hours=1, bad_lines=1
    )
    loader = Loader(lambda: db.connect(accounts["loader"]))
    try:
        summary = load_files(paths, loader)  # LOAD DATA LOCAL needs INSERT only (no FILE)
    finally:
        loader.close()
    assert summary.failed == 0 and summary.rejects == 1, summary.failures
    metadata_server.objects["pageevent"] = [{"id": 1, "title": "Add to cart"}]
    conn = db.connect(accounts["loader"])
    cur = conn.cursor()
    with metadata_client_factory() as client:
        assert refresh_lookup(conn, client, "pageevent") == 1  # RENAME TABLE swap
    for statement in (
        "CREATE DATABASE ss_should_not_exist",
        "CREATE TABLE not_ours (id INT)",
        f"DROP TABLE `{tables.SESSIONS.name}`",
        "SELECT * FROM mysql.user",
    ):
        with pytest.raises((MySQLdb.OperationalError, MySQLdb.ProgrammingError), match="denied"):
            cur.execute(statement)
    conn.close()

    reader = db.connect(accounts["analyst"])
    rcur = reader.cursor()
    rcur.execute("SELECT COUNT(*) FROM v_daily_sessions")
    assert rcur.fetchone()[0] > 0
    for statement in (
        f"SELECT raw_line FROM `{tables.REJECTS_TABLE}`",
        f"INSERT INTO `{tables.LEDGER_TABLE}` (file_name, size, status) VALUES ('x', 1, 'failed')",
        "DROP VIEW v_daily_sessions",
    ):
        with pytest.raises(MySQLdb.OperationalError, match="denied"):
            rcur.execute(statement)
    reader.close()


# ---- the start-up script ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bootstrap():
    spec = importlib.util.spec_from_file_location(
        "stack_bootstrap", REPO / "docker/stack/bootstrap.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE_ENV = {
    "WAREHOUSE_OWNER_PASSWORD": "owner/secret:1",
    "WAREHOUSE_LOADER_PASSWORD": "p@ss:w/rd",
    "SFTP_USER": "monetate",
    "SFTP_PRIVATE_KEY_FILE": "/keys/id",
    "SFTP_HOST_KEY_FILE": "/keys/host.pub",
    "SESSION_STREAM_DROP_URL": "sftp://monetate@sftp:22/upload/session_stream",
    "SESSION_STREAM_STAGING_URL": "/opt/airflow/staging",
}
FILES = {
    "/keys/id": "PRIVATE KEY TEXT\n",
    "/keys/host.pub": "ssh-ed25519 AAAAC3Nz host\n",
    "/keys/api.pem": "PEM\n",
}


def test_bootstrap_makes_the_warehouse_and_sftp_connections(bootstrap):
    conns = bootstrap.connections(BASE_ENV, read=FILES.__getitem__)
    assert set(conns) == {"session_stream_mysql", "session_stream_sftp"}
    mysql = conns["session_stream_mysql"]
    assert (mysql["conn_type"], mysql["host"], mysql["port"], mysql["login"], mysql["schema"]) == (
        "mysql", "mysql", 3306, "loader", "warehouse"
    )  # fmt: skip
    assert mysql["password"] == "p@ss:w/rd"
    assert mysql["extra"]["local_infile"] is True
    # TLS, checked against the CA stack-init made: MySQL 8.4's caching_sha2_password logs in
    # over TLS, and the stack's accounts REQUIRE SSL
    assert mysql["extra"]["ssl_mode"] == "VERIFY_IDENTITY"
    assert mysql["extra"]["ssl"] == {"ca": str(bootstrap.STACK_CA)}
    sftp = conns["session_stream_sftp"]
    assert sftp["extra"] == {
        "private_key": "PRIVATE KEY TEXT\n",
        "host_key": "ssh-ed25519 AAAAC3Nz host",
    }
    assert "no_host_key_check" not in sftp["extra"]


def test_bootstrap_makes_optional_connections_only_when_configured(bootstrap):
    env = {
        **BASE_ENV,
        "SMTP_HOST": "smtp.example.com",
        "SMTP_FROM": "airflow@example.com",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "MONETATE_API_USER": "api-user",
        "MONETATE_RETAILER": "acme",
        "MONETATE_API_PRIVATE_KEY_FILE": "/keys/api.pem",
    }
    conns = bootstrap.connections(env, read=FILES.__getitem__)
    assert set(conns) == {
        "session_stream_mysql", "session_stream_sftp", "smtp_default", "session_stream_slack", "aws_default", "monetate_api"
    }  # fmt: skip
    assert conns["smtp_default"]["extra"] == {
        "from_email": "airflow@example.com",
        "disable_ssl": True,
        "disable_tls": False,
    }
    assert conns["session_stream_slack"] == {
        "conn_type": "slackwebhook",
        "password": env["SLACK_WEBHOOK_URL"],
    }
    assert conns["aws_default"]["extra"] == {"endpoint_url": "http://minio:9000"}
    assert conns["monetate_api"]["login"] == "api-user"
    assert conns["monetate_api"]["password"] == "PEM\n"
    assert conns["monetate_api"]["extra"] == {"retailer_shortname": "acme"}


def test_bootstrap_refuses_an_sftp_connection_without_host_key(bootstrap):
    env = {k: v for k, v in BASE_ENV.items() if k != "SFTP_HOST_KEY_FILE"}
    with pytest.raises(bootstrap.SetupError, match="SFTP_HOST_KEY"):
        bootstrap.connections(env, read=FILES.__getitem__)


def test_bootstrap_names_the_missing_setting(bootstrap):
    env = {k: v for k, v in BASE_ENV.items() if k != "WAREHOUSE_LOADER_PASSWORD"}
    with pytest.raises(
        bootstrap.SetupError, match="WAREHOUSE_LOADER_PASSWORD is not set: add it to .env"
    ):
        bootstrap.connections(env, read=FILES.__getitem__)
    missing_file = {**BASE_ENV, "SFTP_PRIVATE_KEY_FILE": "/nowhere/key"}
    with pytest.raises(
        bootstrap.SetupError, match="cannot read the SFTP private key at /nowhere/key"
    ):
        bootstrap.connections(missing_file)


def test_warehouse_url_survives_special_characters_in_the_password(bootstrap):
    from session_stream.warehouse.db import DbUrl

    url = DbUrl.parse(
        bootstrap.warehouse_url({**BASE_ENV, "WAREHOUSE_LOADER_PASSWORD": "a@b:c/d?e#f%g"})
    )
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "loader",
        "a@b:c/d?e#f%g",
        "mysql",
        3306,
        "warehouse",
    )
    assert (url.ssl_mode, dict(url.ssl)) == ("VERIFY_IDENTITY", {"ca": str(bootstrap.STACK_CA)})


def test_warehouse_tls_can_be_set_or_turned_off(bootstrap):
    from session_stream.warehouse.db import DbUrl

    plain = {**BASE_ENV, "WAREHOUSE_SSL_MODE": "disabled"}
    assert DbUrl.parse(bootstrap.warehouse_url(plain)).ssl_mode == "DISABLED"
    assert bootstrap.connections(plain, read=FILES.__getitem__)["session_stream_mysql"][
        "extra"
    ] == {"charset": "utf8mb4", "local_infile": True, "ssl_mode": "DISABLED"}
    with pytest.raises(bootstrap.SetupError, match="WAREHOUSE_SSL_MODE must be one of"):
        bootstrap.warehouse_url({**BASE_ENV, "WAREHOUSE_SSL_MODE": "yes"})


def test_drop_silence_is_off_for_the_sample_drop_only(bootstrap):
    """The sample drop never gets a new file: a scheduled run after the sample day would alert
    on it (the first unpause did, on the first try-out), so there the check is off by default."""
    assert bootstrap.variables(BASE_ENV)["session_stream_silence_hours"] == "0"
    real = {**BASE_ENV, "SESSION_STREAM_DROP_URL": "sftp://me@sftp.monetate.net/1234/raw_data"}
    assert bootstrap.variables(real)["session_stream_silence_hours"] == "6"
    asked = {**BASE_ENV, "SESSION_STREAM_SILENCE_HOURS": "2.5"}
    assert bootstrap.variables(asked)["session_stream_silence_hours"] == "2.5"
    with pytest.raises(bootstrap.SetupError, match="SESSION_STREAM_SILENCE_HOURS"):
        bootstrap.variables({**BASE_ENV, "SESSION_STREAM_SILENCE_HOURS": "-1"})


def test_a_celery_worker_refuses_to_wait_for_tasks_that_never_come(bootstrap, capsys):
    assert bootstrap.main(["celery-worker"]) == 2  # AIRFLOW__CORE__EXECUTOR unset: LocalExecutor
    assert "AIRFLOW_EXECUTOR=CeleryExecutor" in capsys.readouterr().err


def test_unreadable_finds_what_the_airflow_uid_cannot_read(bootstrap, tmp_path):
    """A checkout made with umask 077 is unreadable to uid 50000: airflow-init says so and how to
    fix it, instead of a DAG folder that silently shows no DAG."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ok.py").write_text("")
    secret = dags / "private.py"
    secret.write_text("")
    secret.chmod(0o600)
    owner = secret.stat().st_uid
    other = 50000 if owner != 50000 else 50001
    assert list(bootstrap.unreadable([dags], owner)) == []
    assert list(bootstrap.unreadable([dags], other)) == [secret]
    secret.chmod(0o644)
    assert list(bootstrap.unreadable([dags], other)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_give_to_hands_a_volume_to_the_airflow_uid(bootstrap, tmp_path):
    logs = tmp_path / "logs"
    (logs / "dag_id=x").mkdir(parents=True)
    (logs / "dag_id=x" / "1.log").write_text("")
    bootstrap.give_to([logs], 50123)
    for path in (logs, logs / "dag_id=x", logs / "dag_id=x" / "1.log"):
        assert (path.stat().st_uid, path.stat().st_gid) == (50123, 0), path


def test_the_warehouse_certificate_verifies_for_the_stacks_names(bootstrap, tmp_path):
    """stack-init's TLS files: a CA, and a server certificate it signed for `mysql`, localhost
    and 127.0.0.1, so clients can use ssl-mode=VERIFY_IDENTITY; made once and kept."""
    from cryptography import x509

    server, ca_dir = tmp_path / "server", tmp_path / "ca"
    bootstrap.mysql_tls(server, ca_dir, owner=None)
    first = (server / "server-cert.pem").read_bytes()
    bootstrap.mysql_tls(server, ca_dir, owner=None)
    assert (server / "server-cert.pem").read_bytes() == first
    assert (server / "server-key.pem").stat().st_mode & 0o077 == 0
    assert (ca_dir / "ca.pem").read_bytes() == (server / "ca.pem").read_bytes()
    assert not list(ca_dir.glob("*key*"))  # clients get the CA certificate alone
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate(first)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"mysql", "localhost"}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_make_env_writes_fresh_secrets_where_it_is_told(tmp_path):
    out = tmp_path / "stack.env"
    subprocess.run(
        ["sh", str(REPO / "docker/make-env.sh"), str(out)], check=True, capture_output=True
    )
    made, example = dict(_env_lines(out)), env_example()
    assert out.stat().st_mode & 0o077 == 0
    for name, value in example.items():
        if re.search(r"PASSWORD|SECRET|KEY", name):
            assert made[name] != value and len(made[name]) >= 32, name
    again = subprocess.run(["sh", str(REPO / "docker/make-env.sh"), str(out)], capture_output=True)
    assert again.returncode != 0  # never overwrites: its secrets must match the volumes
    if os.geteuid() != 0:
        assert made["AIRFLOW_UID"] == str(os.geteuid())
    else:
        assert "AIRFLOW_UID" not in made


def test_bootstrap_sets_the_variables_and_pool_from_env(bootstrap):
    assert bootstrap.variables({**BASE_ENV, "ALERT_EMAIL_TO": "team@example.com"}) == {
        "session_stream_drop_url": "sftp://monetate@sftp:22/upload/session_stream",
        "session_stream_staging_url": "/opt/airflow/staging",
        "session_stream_alert_to": "team@example.com",
        "session_stream_silence_hours": "0",  # the sample drop: see the test below
    }
    assert bootstrap.pool_slots({}) == 2
    with pytest.raises(bootstrap.SetupError, match="SESSION_STREAM_LOAD_SLOTS"):
        bootstrap.pool_slots({"SESSION_STREAM_LOAD_SLOTS": "0"})


def test_bootstrap_defaults_match_the_compose_file(bootstrap, services):
    """The drop URL Airflow gets is the path the sample SFTP server serves the sample under."""
    env = services["airflow-init"]["environment"]
    assert (
        env["SESSION_STREAM_DROP_URL"]
        == "${SESSION_STREAM_DROP_URL:-sftp://monetate@sftp:22/upload/session_stream}"
    )
    assert "sftp-drop:/srv/sftp/upload:ro" in services["sftp"]["volumes"]
    assert services["stack-init"]["environment"]["SAMPLE_DROP_DIR"] == "/drop/session_stream"
    assert "sftp-drop:/drop" in services["stack-init"]["volumes"]
    assert (
        bootstrap.LOAD_POOL == policy.LOAD_POOL
    )  # the stack's copy: bootstrap.py imports no engine
    assert (
        env["SESSION_STREAM_DROP_URL"]
        == f"${{SESSION_STREAM_DROP_URL:-{bootstrap.SAMPLE_DROP_URL}}}"
    )
    # the CA stack-init writes is where the connection's default points
    assert "mysql-ca:/tls/ca" in services["stack-init"]["volumes"]
    assert services["stack-init"]["environment"]["MYSQL_CA_DIR"] == "/tls/ca"
    assert f"mysql-ca:{bootstrap.CA_DIR}" in services["airflow-init"]["volumes"]
    for name in AIRFLOW_COMPONENTS:
        assert f"mysql-ca:{bootstrap.CA_DIR}:ro" in services[name]["volumes"], name
    assert env["WAREHOUSE_SSL_CA"] == f"${{WAREHOUSE_SSL_CA:-{bootstrap.STACK_CA}}}"


def test_sftp_keys_are_made_once_and_accepted_by_sshd(bootstrap, tmp_path):
    server, client = tmp_path / "server", tmp_path / "client"
    bootstrap.sftp_keys(server, client, client_owner=None)
    host_key = (server / "ssh_host_ed25519_key").read_bytes()
    login_key = (client / "id_ed25519").read_bytes()
    bootstrap.sftp_keys(server, client, client_owner=None)
    assert (server / "ssh_host_ed25519_key").read_bytes() == host_key
    assert (client / "id_ed25519").read_bytes() == login_key
    assert (server / "ssh_host_ed25519_key").stat().st_mode & 0o077 == 0
    assert (client / "ssh_host_ed25519_key.pub").read_text().startswith("ssh-ed25519 ")
    assert (server / "authorized_keys" / "monetate").read_text().startswith("ssh-ed25519 ")

    import paramiko

    # The keys are what the DAG's SFTP client loads: the login key and the host key agree.
    assert (
        paramiko.Ed25519Key.from_private_key_file(str(client / "id_ed25519")).get_name()
        == "ssh-ed25519"
    )
    host_public = paramiko.Ed25519Key.from_private_key_file(
        str(server / "ssh_host_ed25519_key")
    ).get_base64()
    assert host_public in (client / "ssh_host_ed25519_key.pub").read_text()

    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if sshd is None:
        pytest.skip("sshd is not installed: the config check needs it")
    # `sshd -t` wants its privilege separation directory, which Debian's init script makes and
    # tests/servers.py makes for the SFTP tests; this test may run first, or alone.
    try:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    except PermissionError:
        if not Path("/run/sshd").is_dir():
            pytest.skip("/run/sshd is missing and this user cannot make it: sshd -t needs it")
    config = tmp_path / "sshd_config"
    config.write_text(SSHD_CONFIG.read_text().replace("/etc/ssh/keys", str(server)))
    result = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


FAKE_TOOL = """#!/bin/sh
# Records how it was called: arguments, stdin, and any file argument's content.
{
  echo "ARGV $(basename "$0") $*"
  for a in "$@"; do [ -f "$a" ] && echo "FILE $(cat "$a")"; done
  [ -n "$SESSION_STREAM_DB" ] && echo "DB $SESSION_STREAM_DB"
  [ "$2" = "create" ] && echo "STDIN $(tr "\\n" " ")"
} >> "$CALLS"
exit 0
"""


def test_airflow_init_passes_secrets_in_files_stdin_and_env_never_as_arguments(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("airflow", "session-stream"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "id").write_text("PRIVATE-KEY-TEXT")
    (tmp_path / "host.pub").write_text("ssh-ed25519 AAAAC3Nz")
    calls = tmp_path / "calls.log"
    env = {
        **BASE_ENV,
        "SFTP_PRIVATE_KEY_FILE": str(tmp_path / "id"),
        "SFTP_HOST_KEY_FILE": str(tmp_path / "host.pub"),
        "AIRFLOW_ADMIN_PASSWORD": "admin-secret",
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "TMPDIR": str(tmp_path),
        # As root (CI), airflow-init hands AIRFLOW_HOME's volumes to AIRFLOW_UID and becomes it:
        # here both are this test's own.
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_UID": str(os.geteuid()),
    }
    script = REPO / "docker/stack/bootstrap.py"
    result = subprocess.run(
        [sys.executable, str(script), "airflow-init"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    log = calls.read_text()
    argv = [line for line in log.splitlines() if line.startswith("ARGV")]
    assert [line.split()[1:4] for line in argv] == [
        ["airflow", "db", "migrate"],
        ["airflow", "users", "create"],
        ["airflow", "connections", "import"],
        ["airflow", "variables", "import"],
        ["airflow", "pools", "set"],
        ["session-stream", "init-db"],
        ["session-stream", "grants", "--apply"],
    ]
    assert "ARGV airflow pools set session_stream_load 2 " in log
    assert "ARGV session-stream grants --apply --loader loader --analyst analyst" in log
    for secret in ("p@ss:w/rd", "owner/secret:1", "admin-secret", "PRIVATE-KEY-TEXT"):
        assert not any(secret in line for line in argv), secret
        assert secret not in result.stdout + result.stderr, secret
    assert "STDIN admin-secret admin-secret" in log  # getpass asks twice
    assert '"password": "p@ss:w/rd"' in log and "PRIVATE-KEY-TEXT" in log  # in the import file
    # init-db and the grants run as the owner: the loader has no DDL rights
    assert log.count("DB mysql://owner:owner%2Fsecret%3A1@mysql:3306/warehouse") == 2
    assert "DB mysql://loader:" not in log
    # the import files are gone
    assert not list(tmp_path.glob("bootstrap-*"))
