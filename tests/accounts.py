"""Throwaway MySQL users for least-privilege tests: a schema owner, a loader and an analyst on a
throwaway database, with the GRANTs `session-stream grants` prints (applied as root)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest
from conftest import TEST_SERVER

from session_stream.warehouse import db

CLI = [sys.executable, "-m", "session_stream.runs.cli"]


@dataclass
class Accounts:
    database: str
    urls: dict[str, str]  # role -> URL with its password
    names: dict[str, str]  # role -> 'user'@'%'

    def grant(self, role: str) -> None:
        """Apply what `session-stream grants` prints for `role`, as root."""
        statements = cli_grants(self.database, **{role: self.names[role]})
        conn = db.connect(TEST_SERVER, database=False)
        cur = conn.cursor()
        for statement in statements:
            cur.execute(statement.rstrip(";"))
        conn.close()


def cli_grants(database: str, **users: str) -> list[str]:
    args = [f"--{role}={name}" for role, name in users.items()]
    result = subprocess.run(
        [*CLI, "grants", "--database", database, *args], capture_output=True, text=True, check=True
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def accounts():
    tag = uuid.uuid4().hex[:8]
    database = f"ss_lp_{tag}"
    password = f"pw-{tag}"
    users = {role: f"ss_{role[:2]}_{tag}" for role in ("owner", "loader", "analyst")}
    base = db.DbUrl.parse(TEST_SERVER)
    root = db.connect(TEST_SERVER, database=False)
    cur = root.cursor()
    cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    try:
        for user in users.values():
            cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
        found = Accounts(
            database,
            {
                role: f"mysql://{user}:{password}@{base.host}:{base.port}/{database}"
                for role, user in users.items()
            },
            {role: f"{user}@%" for role, user in users.items()},
        )
        found.grant("owner")
        found.grant("loader")
        yield found
    finally:
        for user in users.values():
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        root.close()
