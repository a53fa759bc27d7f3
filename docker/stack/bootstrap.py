"""Start-up jobs of the docker-compose stack, driven by environment variables (see .env.example).

    python bootstrap.py sftp-init      keys for the sample SFTP server, and a sample day of files
    python bootstrap.py airflow-init   migrate Airflow's database, then create the admin user, the
                                       connections, Variables and pool, the warehouse tables and
                                       the loader's and analyst's table-level rights (as owner)
    python bootstrap.py exec CMD ...   run CMD with SESSION_STREAM_DB built from the WAREHOUSE_* values

Secrets go from the environment to Airflow in a private temporary file or on stdin, never as
command-line arguments, so they show neither in `ps` nor in a log. Every job is safe to run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import quote

LOAD_POOL = "session_stream_load"
DROP_URL_VARIABLE = "session_stream_drop_url"
STAGING_URL_VARIABLE = "session_stream_staging_url"
ALERT_TO_VARIABLE = "session_stream_alert_to"


class SetupError(Exception):
    """A setting is missing or wrong: the message says which one to fix in .env."""


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SetupError(f"{name} is not set: add it to .env (see .env.example)")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")


def _read(path: str, what: str, read: Callable[[str], str]) -> str:
    try:
        return read(path)
    except OSError as exc:
        raise SetupError(f"cannot read {what} at {path}: {exc.strerror}") from None


def warehouse_url(env: Mapping[str, str], role: str = "LOADER") -> str:
    """The loader's (or the owner's) mysql:// URL, the form SESSION_STREAM_DB takes, password
    percent-encoded."""
    user = quote(env.get(f"WAREHOUSE_{role}_USER") or role.lower(), safe="")
    password = quote(_need(env, f"WAREHOUSE_{role}_PASSWORD"), safe="")
    host = env.get("WAREHOUSE_HOST") or "mysql"
    port = env.get("WAREHOUSE_PORT") or "3306"
    database = env.get("WAREHOUSE_DATABASE") or "warehouse"
    return f"mysql://{user}:{password}@{host}:{port}/{database}"


def connections(
    env: Mapping[str, str], read: Callable[[str], str] = lambda p: Path(p).read_text()
) -> dict:
    """The Airflow connections, in `airflow connections import` JSON form, keyed by conn_id.

    The warehouse and SFTP connections are always made; the optional ones only when their
    settings are present (an absent one is left alone, so a connection made in the UI survives).
    """
    conns: dict[str, dict] = {
        "session_stream_mysql": {
            "conn_type": "mysql",
            "host": env.get("WAREHOUSE_HOST") or "mysql",
            "port": int(env.get("WAREHOUSE_PORT") or 3306),
            "login": env.get("WAREHOUSE_LOADER_USER") or "loader",
            "password": _need(env, "WAREHOUSE_LOADER_PASSWORD"),
            "schema": env.get("WAREHOUSE_DATABASE") or "warehouse",
            # local_infile: LOAD DATA LOCAL; the DAG also asks MySqlHook for it explicitly.
            "extra": {"charset": "utf8mb4", "local_infile": True},
        }
    }

    sftp_extra: dict[str, object] = {}
    if env.get("SFTP_PRIVATE_KEY_FILE"):
        sftp_extra["private_key"] = _read(
            env["SFTP_PRIVATE_KEY_FILE"], "the SFTP private key", read
        )
    if env.get("SFTP_PRIVATE_KEY_PASSPHRASE"):
        sftp_extra["private_key_passphrase"] = env["SFTP_PRIVATE_KEY_PASSPHRASE"]
    # Never trust an unknown host: without its key the connection would be open to a man in the middle.
    host_key = (env.get("SFTP_HOST_KEY") or "").strip()
    if not host_key and env.get("SFTP_HOST_KEY_FILE"):
        host_key = _read(
            env["SFTP_HOST_KEY_FILE"], "the SFTP server's public host key", read
        ).strip()
    if not host_key:
        raise SetupError(
            "no SFTP host key: set SFTP_HOST_KEY to the server's public key "
            "('ssh-ed25519 AAAA...', from `ssh-keyscan -t ed25519 HOST`) or SFTP_HOST_KEY_FILE to a file holding it"
        )
    sftp_extra["host_key"] = host_key
    sftp: dict[str, object] = {
        "conn_type": "sftp",
        "host": env.get("SFTP_HOST") or "sftp",
        "port": int(env.get("SFTP_PORT") or 22),
        "login": _need(env, "SFTP_USER"),
        "extra": sftp_extra,
    }
    if env.get("SFTP_PASSWORD"):
        sftp["password"] = env["SFTP_PASSWORD"]
    if "private_key" not in sftp_extra and "password" not in sftp:
        raise SetupError("the SFTP connection needs SFTP_PRIVATE_KEY_FILE or SFTP_PASSWORD")
    conns["session_stream_sftp"] = sftp

    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_ENDPOINT_URL"):
        aws_extra = {
            k: v
            for k, v in (
                ("region_name", env.get("AWS_DEFAULT_REGION")),
                ("endpoint_url", env.get("AWS_ENDPOINT_URL")),
            )
            if v
        }
        conns["aws_default"] = {
            "conn_type": "aws",
            "login": env.get("AWS_ACCESS_KEY_ID") or None,
            "password": env.get("AWS_SECRET_ACCESS_KEY") or None,
            "extra": aws_extra,
        }

    if env.get("SMTP_HOST"):
        conns["smtp_default"] = {
            "conn_type": "smtp",
            "host": env["SMTP_HOST"],
            "port": int(env.get("SMTP_PORT") or 587),
            "login": env.get("SMTP_USER") or None,
            "password": env.get("SMTP_PASSWORD") or None,
            "extra": {
                "from_email": _need(env, "SMTP_FROM"),
                # The provider's defaults are implicit TLS (port 465); most relays want STARTTLS on 587.
                "disable_ssl": not _flag(env, "SMTP_SSL", False),
                "disable_tls": not _flag(env, "SMTP_STARTTLS", True),
            },
        }

    if env.get("SLACK_WEBHOOK_URL"):
        # The Slack provider accepts the whole webhook URL in the password field.
        conns["session_stream_slack"] = {
            "conn_type": "slackwebhook",
            "password": env["SLACK_WEBHOOK_URL"],
        }

    if env.get("MONETATE_API_USER"):
        api_extra = {"retailer_shortname": _need(env, "MONETATE_RETAILER")}
        for name, key in (("MONETATE_API_BASE", "api_base"), ("MONETATE_AUTH_BASE", "auth_base")):
            if env.get(name):
                api_extra[key] = env[name]
        conns["monetate_api"] = {
            "conn_type": "http",
            "login": env["MONETATE_API_USER"],
            "password": _read(
                _need(env, "MONETATE_API_PRIVATE_KEY_FILE"), "the Monetate API private key", read
            ),
            "extra": api_extra,
        }
    return conns


def variables(env: Mapping[str, str]) -> dict[str, str]:
    """The Airflow Variables the DAGs read."""
    values = {
        DROP_URL_VARIABLE: _need(env, "SESSION_STREAM_DROP_URL"),
        STAGING_URL_VARIABLE: _need(env, "SESSION_STREAM_STAGING_URL"),
    }
    if env.get("ALERT_EMAIL_TO"):
        values[ALERT_TO_VARIABLE] = env["ALERT_EMAIL_TO"]
    return values


def pool_slots(env: Mapping[str, str]) -> int:
    raw = env.get("SESSION_STREAM_LOAD_SLOTS") or "2"
    if not raw.isdigit() or int(raw) < 1:
        raise SetupError(
            f"SESSION_STREAM_LOAD_SLOTS must be a whole number of at least 1, got {raw!r}"
        )
    return int(raw)


def _run(
    args: list[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None
) -> None:
    print("+", " ".join(args), flush=True)  # arguments only: no secret is ever passed as one
    # A new session has no controlling terminal, so getpass() reads the password from stdin.
    subprocess.run(
        args, input=stdin, text=True, check=True, env=env, start_new_session=stdin is not None
    )


def _import_file(kind: str, data: dict, extra_args: list[str]) -> None:
    """`airflow <kind> import` from a JSON file only this user can read, deleted right after."""
    with tempfile.TemporaryDirectory(prefix=f"bootstrap-{kind}-") as tmp:  # mode 0700
        path = Path(tmp) / f"{kind}.json"
        path.write_text(json.dumps(data))
        path.chmod(0o600)
        _run(["airflow", kind, "import", *extra_args, str(path)])


def airflow_init(env: Mapping[str, str]) -> None:
    # Check every setting before changing anything, so a typo in .env fails fast and alone.
    conns, values, slots = connections(env), variables(env), pool_slots(env)
    admin_user = env.get("AIRFLOW_ADMIN_USER") or "admin"
    admin_password = _need(env, "AIRFLOW_ADMIN_PASSWORD")
    owner_url = warehouse_url(env, "OWNER")
    warehouse_url(env)  # the loader's password must be set too

    _run(["airflow", "db", "migrate"])
    # Creates the user only if missing (the command reads the password, then skips an existing
    # user): a password changed later in the UI is kept.
    _run(
        [
            "airflow", "users", "create", "--username", admin_user, "--role", "Admin",
            "--firstname", "Airflow", "--lastname", "Admin",
            "--email", env.get("AIRFLOW_ADMIN_EMAIL") or "admin@example.com",
        ],
        stdin=f"{admin_password}\n{admin_password}\n",
    )  # fmt: skip
    # .env is the source of truth for what it defines: re-running airflow-init applies edits.
    _import_file("connections", conns, ["--overwrite"])
    _import_file("variables", values, ["--action-on-existing-key", "overwrite"])
    _run(
        [
            "airflow",
            "pools",
            "set",
            LOAD_POOL,
            str(slots),
            "Concurrent loads into the MySQL warehouse",
        ]
    )
    # As the schema owner, the only account with DDL rights: the tables, then the loader's and
    # the analyst's table-level rights on them. The URL goes in SESSION_STREAM_DB, so the
    # password stays off the command lines.
    as_owner = {**os.environ, "SESSION_STREAM_DB": owner_url}
    _run(["session-stream", "init-db"], env=as_owner)
    loader = env.get("WAREHOUSE_LOADER_USER") or "loader"
    analyst = env.get("WAREHOUSE_ANALYST_USER") or "analyst"
    _run(
        ["session-stream", "grants", "--apply", "--loader", loader, "--analyst", analyst],
        env=as_owner,
    )
    print(
        f"airflow-init done: connections {', '.join(sorted(conns))}; pool {LOAD_POOL} ({slots} slots)"
    )


def _ed25519_pair() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, s.NoEncryption())
    public = key.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH)
    return private, public


def _public_half(private: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization as s

    key = s.load_ssh_private_key(private, password=None)
    return key.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH) + b"\n"


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    path.write_bytes(data)
    path.chmod(mode)


def sftp_keys(server: Path, client: Path, client_owner: int | None = 50000) -> None:
    """Keys for the sample SFTP server, made once and kept.

    server/ is mounted into the sftp service: its host key, and the authorized key of `monetate`.
    client/ is mounted into airflow-init only: the login's private key and the host's public key.
    """
    host_key = server / "ssh_host_ed25519_key"
    if not host_key.exists():
        private, _ = _ed25519_pair()
        _write(host_key, private, 0o600)  # sshd ignores a host key others can read
        print(f"made the SFTP host key {host_key}")
    _write(client / "ssh_host_ed25519_key.pub", _public_half(host_key.read_bytes()), 0o644)
    user_key = client / "id_ed25519"
    if not user_key.exists():
        private, public = _ed25519_pair()
        _write(user_key, private, 0o600)
        _write(server / "authorized_keys" / "monetate", public + b"\n", 0o644)
        print(f"made the SFTP login key {user_key}")
    if client_owner is not None and os.geteuid() == 0:
        # airflow-init runs as the airflow user (uid 50000) and must read the client files.
        for path in (client, *client.iterdir()):
            os.chown(path, client_owner, 0)
    server.chmod(0o755)  # sshd's StrictModes: no folder on the way to a key may be group-writable


def sftp_init(env: Mapping[str, str]) -> None:
    """The sample SFTP server's keys, and a sample day of files under the drop."""
    sftp_keys(
        Path(env.get("SFTP_SERVER_KEYS_DIR") or "/keys/server"),
        Path(env.get("SFTP_CLIENT_KEYS_DIR") or "/keys/client"),
    )

    drop = Path(env.get("SAMPLE_DROP_DIR") or "/drop/session_stream")
    day = _need(env, "SAMPLE_DAY")
    day_folder = drop / day.replace("-", "/")
    if day_folder.is_dir() and any(day_folder.iterdir()):
        print(f"sample drop {day_folder} already there")
    else:
        _run(
            [
                "session-stream", "generate-sample", "--out", str(drop), "--day", day,
                "--sessions", env.get("SAMPLE_SESSIONS") or "5000", "--files", env.get("SAMPLE_FILES") or "16",
            ]
        )  # fmt: skip
    # The SFTP user (uid 1001) only reads: files 0644, folders 0755, owned by root.
    for folder, _dirs, files in os.walk(drop.parent):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def exec_with_db(env: Mapping[str, str], command: list[str]) -> None:
    if not command:
        raise SetupError(
            "usage: bootstrap.py exec COMMAND [ARGS...], e.g. exec session-stream load /drop"
        )
    os.environ["SESSION_STREAM_DB"] = warehouse_url(env)
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    jobs = {"sftp-init": sftp_init, "airflow-init": airflow_init}
    try:
        if argv[:1] == ["exec"]:
            exec_with_db(os.environ, argv[1:])
        elif len(argv) == 1 and argv[0] in jobs:
            jobs[argv[0]](os.environ)
        else:
            print(f"usage: bootstrap.py {{{'|'.join(jobs)}|exec CMD...}}", file=sys.stderr)
            return 2
    except SetupError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(
            f"bootstrap: `{' '.join(exc.cmd)}` failed with exit code {exc.returncode} (see above)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
