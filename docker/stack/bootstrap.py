"""Start-up jobs of the docker-compose stack, driven by environment variables (see .env.example).

    python bootstrap.py stack-init     keys for the sample SFTP server, TLS certificates for the
                                       warehouse (both made once and kept), a sample day of files
    python bootstrap.py airflow-init   as root: hand the volumes to AIRFLOW_UID and check it can
                                       read the mounted code; then as AIRFLOW_UID: migrate Airflow's
                                       database, create the admin user, the connections, Variables
                                       and pool, the warehouse tables and the loader's and
                                       analyst's table-level rights (as owner)
    python bootstrap.py celery-worker  a Celery worker, once sure the scheduler sends it tasks
    python bootstrap.py exec CMD ...   run CMD with SESSION_STREAM_DB built from the WAREHOUSE_* values

Secrets go from the environment to Airflow in a private temporary file or on stdin, never as
command-line arguments, so they show neither in `ps` nor in a log. Every job is safe to run again.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

LOAD_POOL = "session_stream_load"
DROP_URL_VARIABLE = "session_stream_drop_url"
STAGING_URL_VARIABLE = "session_stream_staging_url"
ALERT_TO_VARIABLE = "session_stream_alert_to"
SILENCE_HOURS_VARIABLE = "session_stream_silence_hours"
# The drop stack-init fills once and nobody adds to: a silence check there could only alarm.
SAMPLE_DROP_URL = "sftp://monetate@sftp:22/upload/session_stream"
DEFAULT_SILENCE_HOURS = "6"

AIRFLOW_HOME = Path(os.environ.get("AIRFLOW_HOME") or "/opt/airflow")
DEFAULT_UID = 50000
# Where every Airflow container finds the CA that signed the warehouse's certificate: the
# mysql-ca volume. stack-init writes the stack's own CA there; airflow-init copies a CA of the
# user's (WAREHOUSE_SSL_CA, e.g. in docker/secrets/) next to it, since only it mounts secrets.
CA_DIR = Path("/run/session-stream/mysql-ca")
STACK_CA = CA_DIR / "ca.pem"
COPIED_CA = CA_DIR / "warehouse-ca.pem"
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
MYSQL_UID = 999  # the mysql user of the official MySQL (and MariaDB) images


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


def warehouse_tls(env: Mapping[str, str], ca: str | None = None) -> tuple[str, str | None]:
    """(ssl-mode, CA file) for the warehouse. TLS by default: the stack's MySQL requires it of
    its accounts, and MySQL 8.4's caching_sha2_password needs it (or an RSA key exchange)."""
    mode = (env.get("WAREHOUSE_SSL_MODE") or "VERIFY_IDENTITY").strip().upper().replace("-", "_")
    if mode not in SSL_MODES:
        raise SetupError(f"WAREHOUSE_SSL_MODE must be one of {', '.join(SSL_MODES)}, got {mode!r}")
    if mode == "DISABLED":
        return mode, None
    if ca is None:
        ca = str(COPIED_CA) if COPIED_CA.exists() else str(STACK_CA)
    return mode, ca


def warehouse_url(env: Mapping[str, str], role: str = "LOADER", ca: str | None = None) -> str:
    """The loader's (or the owner's) mysql:// URL, the form SESSION_STREAM_DB takes, password
    percent-encoded, with its TLS settings."""
    user = quote(env.get(f"WAREHOUSE_{role}_USER") or role.lower(), safe="")
    password = quote(_need(env, f"WAREHOUSE_{role}_PASSWORD"), safe="")
    host = env.get("WAREHOUSE_HOST") or "mysql"
    port = env.get("WAREHOUSE_PORT") or "3306"
    database = env.get("WAREHOUSE_DATABASE") or "warehouse"
    url = f"mysql://{user}:{password}@{host}:{port}/{database}"
    mode, ca = warehouse_tls(env, ca)
    query = {"ssl-mode": mode, **({"ssl-ca": ca} if ca else {})}
    return f"{url}?{urlencode(query)}"


def connections(
    env: Mapping[str, str],
    read: Callable[[str], str] = lambda p: Path(p).read_text(),
    ca: str | None = None,
) -> dict:
    """The Airflow connections, in `airflow connections import` JSON form, keyed by conn_id.

    The warehouse and SFTP connections are always made; the optional ones only when their
    settings are present (an absent one is left alone, so a connection made in the UI survives).
    `ca`: where the Airflow containers find the warehouse's CA (default: the mysql-ca volume's).
    """
    mode, ca = warehouse_tls(env, ca)
    # ssl and ssl_mode as the MySQL provider names them (plugins/session_stream_config.py)
    tls = {"ssl_mode": mode, **({"ssl": {"ca": ca}} if ca else {})}
    conns: dict[str, dict] = {
        "session_stream_mysql": {
            "conn_type": "mysql",
            "host": env.get("WAREHOUSE_HOST") or "mysql",
            "port": int(env.get("WAREHOUSE_PORT") or 3306),
            "login": env.get("WAREHOUSE_LOADER_USER") or "loader",
            "password": _need(env, "WAREHOUSE_LOADER_PASSWORD"),
            "schema": env.get("WAREHOUSE_DATABASE") or "warehouse",
            # No local_infile extra: the engine enables LOAD DATA LOCAL itself, for the staged
            # files only (warehouse/mysql_guard.py); nothing reads the extra.
            "extra": {"charset": "utf8mb4", **tls},
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


def silence_hours(env: Mapping[str, str]) -> str:
    """Hours without a new file before a scheduled run alerts. The sample drop never gets a new
    file, so there the check is off unless asked for: else the first scheduled run after the
    sample day (any run at all, once the sample is 6 hours old) would alert on an idle drop."""
    raw = (env.get("SESSION_STREAM_SILENCE_HOURS") or "").strip()
    if not raw:
        sample = env.get("SESSION_STREAM_DROP_URL", "").strip().rstrip("/") == SAMPLE_DROP_URL
        return "0" if sample else DEFAULT_SILENCE_HOURS
    try:
        if float(raw) >= 0:
            return raw
    except ValueError:
        pass
    raise SetupError(
        f"SESSION_STREAM_SILENCE_HOURS must be a number of hours (0 turns the check off), got {raw!r}"
    )


def variables(env: Mapping[str, str]) -> dict[str, str]:
    """The Airflow Variables the DAGs read."""
    values = {
        DROP_URL_VARIABLE: _need(env, "SESSION_STREAM_DROP_URL"),
        STAGING_URL_VARIABLE: _need(env, "SESSION_STREAM_STAGING_URL"),
        SILENCE_HOURS_VARIABLE: silence_hours(env),
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


def airflow_uid(env: Mapping[str, str]) -> int:
    raw = (env.get("AIRFLOW_UID") or str(DEFAULT_UID)).strip()
    if not raw.isdigit():
        raise SetupError(f"AIRFLOW_UID must be a numeric user id, like $(id -u), got {raw!r}")
    return int(raw)


def _can_read(st: os.stat_result, uid: int) -> bool:
    """Whether uid, in group 0 (as every Airflow container runs), may read a file or enter a
    folder with these permissions."""
    need = stat.S_IRUSR | (stat.S_IXUSR if stat.S_ISDIR(st.st_mode) else 0)
    if uid == 0:
        return True
    if st.st_uid == uid:
        return st.st_mode & need == need
    if st.st_gid == 0:
        return st.st_mode & (need >> 3) == need >> 3
    return st.st_mode & (need >> 6) == need >> 6


def unreadable(folders: list[Path], uid: int) -> Iterator[Path]:
    """Files and folders under `folders` that uid (group 0) cannot read."""
    for top in folders:
        if not top.exists():
            continue
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for path in (Path(folder), *(Path(folder) / f for f in files)):
                if not _can_read(path.stat(), uid):
                    yield path


def give_to(folders: list[Path], uid: int) -> None:
    """chown -R uid:0 on the Airflow volumes, as the official compose file's init does: a volume
    made before AIRFLOW_UID changed, or by another image, stays writable."""
    for top in folders:
        if not top.exists():
            continue
        for folder, dirs, files in os.walk(top):
            for path in (folder, *(os.path.join(folder, n) for n in dirs + files)):
                st = os.lstat(path)
                if (st.st_uid, st.st_gid) != (uid, 0):
                    os.lchown(path, uid, 0)


def install_ca(env: Mapping[str, str]) -> str | None:
    """The CA file every Airflow container reads: the stack's own, or a copy of WAREHOUSE_SSL_CA
    (a file only airflow-init can see, in docker/secrets/) in the shared mysql-ca volume."""
    mode, _ = warehouse_tls(env, "")
    wanted = (env.get("WAREHOUSE_SSL_CA") or "").strip()
    if mode == "DISABLED" or not wanted or not CA_DIR.is_dir():
        return None
    if Path(wanted) == STACK_CA:
        COPIED_CA.unlink(missing_ok=True)
        return str(STACK_CA)
    pem = _read(wanted, "the warehouse's CA certificate (WAREHOUSE_SSL_CA)", Path.read_text)
    COPIED_CA.write_text(pem)
    COPIED_CA.chmod(0o644)
    return str(COPIED_CA)


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(0)
    os.setuid(uid)


def airflow_init(env: Mapping[str, str]) -> None:
    uid = airflow_uid(env)
    as_root = os.geteuid() == 0
    if as_root:
        give_to([AIRFLOW_HOME / "logs", AIRFLOW_HOME / "staging"], uid)
    for path in unreadable([AIRFLOW_HOME / d for d in ("dags", "plugins", "include")], uid):
        raise SetupError(
            f"{path} cannot be read by uid {uid}, which the Airflow services run as: set "
            "AIRFLOW_UID=$(id -u) in .env (docker/make-env.sh does), or make the checkout "
            "readable: chmod -R a+rX dags plugins include"
        )
    # Check every setting before changing anything, so a typo in .env fails fast and alone.
    # Key files are read here, as root: a key kept at 0600 in docker/secrets/ is readable.
    ca = install_ca(env) if as_root else None
    conns, values, slots = connections(env, ca=ca), variables(env), pool_slots(env)
    admin_user = env.get("AIRFLOW_ADMIN_USER") or "admin"
    admin_password = _need(env, "AIRFLOW_ADMIN_PASSWORD")
    owner_url = warehouse_url(env, "OWNER", ca)
    warehouse_url(env)  # the loader's password must be set too
    if as_root:
        # Airflow itself never runs as root: what it writes (logs) stays the services' own.
        drop_privileges(uid)

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


def sftp_keys(server: Path, client: Path, client_owner: int | None = None) -> None:
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
        for path in (client, *client.iterdir()):
            os.chown(path, client_owner, 0)
    server.chmod(0o755)  # sshd's StrictModes: no folder on the way to a key may be group-writable


def _tls_cert(subject_cn: str, key, issuer_cn: str, issuer_key, *, ca: bool, days: int):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(subject_cn),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def mysql_tls(
    server: Path, ca_dir: Path, host: str = "mysql", owner: int | None = MYSQL_UID
) -> None:
    """The warehouse's TLS files, made once and kept: a CA, and a certificate it signs for the
    server's names in the stack (`mysql`, `localhost`, 127.0.0.1), so clients can check the
    server's identity (ssl-mode=VERIFY_IDENTITY). server/ is mounted into mysql only (the key);
    ca_dir/ gets the CA certificate alone, for every client. The CA's key is not kept."""
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import rsa

    names = ("ca.pem", "server-cert.pem", "server-key.pem")
    if not all((server / n).exists() for n in names):
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_cert = _tls_cert(
            "session-stream warehouse CA", ca_key, "session-stream warehouse CA", ca_key,
            ca=True, days=3650,
        )  # fmt: skip
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _tls_cert(host, key, "session-stream warehouse CA", ca_key, ca=False, days=3650)
        pem = s.Encoding.PEM
        _write(server / "ca.pem", ca_cert.public_bytes(pem), 0o644)
        _write(server / "server-cert.pem", cert.public_bytes(pem), 0o644)
        key_pem = key.private_bytes(pem, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption())
        _write(server / "server-key.pem", key_pem, 0o600)
        print(f"made the warehouse's TLS certificate for {host} in {server}")
    if owner is not None and os.geteuid() == 0:
        os.chown(server / "server-key.pem", owner, owner)  # mysqld runs as uid 999
    _write(ca_dir / "ca.pem", (server / "ca.pem").read_bytes(), 0o644)


def stack_init(env: Mapping[str, str]) -> None:
    """The sample SFTP server's keys, the warehouse's TLS files, and a sample day of files."""
    sftp_keys(
        Path(env.get("SFTP_SERVER_KEYS_DIR") or "/keys/server"),
        Path(env.get("SFTP_CLIENT_KEYS_DIR") or "/keys/client"),
    )
    mysql_tls(
        Path(env.get("MYSQL_TLS_DIR") or "/tls/server"), Path(env.get("MYSQL_CA_DIR") or "/tls/ca")
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


def celery_worker(env: Mapping[str, str]) -> None:
    """`airflow celery worker`, unless the stack's executor is not Celery: then the scheduler
    runs every task itself and a worker would wait for ever, so say what to set instead."""
    if "CeleryExecutor" not in (env.get("AIRFLOW__CORE__EXECUTOR") or ""):
        raise SetupError(
            "the scheduler does not send tasks to Celery workers unless AIRFLOW_EXECUTOR="
            "CeleryExecutor is set in .env: set it, then `docker compose --profile celery up -d`"
        )
    os.execvp("airflow", ["airflow", "celery", "worker"])


def exec_with_db(env: Mapping[str, str], command: list[str]) -> None:
    if not command:
        raise SetupError(
            "usage: bootstrap.py exec COMMAND [ARGS...], e.g. exec session-stream load /drop"
        )
    os.environ["SESSION_STREAM_DB"] = warehouse_url(env)
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    jobs = {"stack-init": stack_init, "airflow-init": airflow_init, "celery-worker": celery_worker}
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
