"""scripts/system-deps.sh: what `make` and .ci/run check before pip runs.

Each test runs the real script in a scratch machine: PATH is a folder holding only the tools the
test allows (links to the real ones, or small fakes), PKG_CONFIG_LIBDIR a folder of .pc files the
test writes, SYSTEM_DEPS_SBIN the folder where daemons would be. apt-get is always a fake that
records its calls; SYSTEM_DEPS_INSTALL=0 takes the path a non-root user takes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "system-deps.sh"
README = REPO / "README.md"
BASH = shutil.which("bash")
SUDO = "" if os.geteuid() == 0 else "sudo "
CC = (sysconfig.get_config_var("CC") or "cc").split()[0]  # the compiler the script looks for
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"

HEADERS = "MySQL client headers (pkg-config knows none of mysqlclient mariadb libmariadb perconaserverclient)"
PKG_CONFIG = "pkg-config (mysqlclient's build asks it for the MySQL client library)"
COMPILER = f"a C compiler with the C library's headers ({CC})"
SERVER_FOR_TESTS = (
    "MariaDB server (mariadbd and mariadb-install-db; the tests use one on 127.0.0.1:3306)"
)
SERVER_FOR_DEMO = "MariaDB server (mariadbd and mariadb-install-db; the demo starts a private one)"
CLIENT = "MariaDB client (mariadb or mysql; sets up and checks the test server)"
SSHD = "OpenSSH server (sshd; the SFTP tests start their own)"


class Machine:
    """A scratch system: bin/ is all of PATH, sbin/ the daemons' folder, pc/ pkg-config's."""

    def __init__(self, root: Path):
        self.root = root
        self.bin, self.sbin, self.pc = root / "bin", root / "sbin", root / "pc"
        for folder in (self.bin, self.sbin, self.pc):
            folder.mkdir()
        self.apt_calls = root / "apt-calls"
        self.fake("apt-get", f'echo "$DEBIAN_FRONTEND $*" >> {self.apt_calls}; exit 1')

    def link(self, name: str, folder: Path | None = None) -> None:
        real = shutil.which(name)
        assert real, f"the test needs {name} on this machine"
        (folder or self.bin).joinpath(name).symlink_to(real)

    def fake(self, name: str, body: str, folder: Path | None = None) -> Path:
        path = (folder or self.bin) / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return path

    def remove(self, name: str) -> None:
        (self.bin / name).unlink()

    def mysql_headers(self, name: str = "mysqlclient") -> None:
        (self.pc / f"{name}.pc").write_text(
            f"Name: {name}\nDescription: test\nVersion: 10.11\nCflags: -I/x\nLibs: -lx\n"
        )

    def build_tools(self) -> None:
        """Everything `make setup` needs."""
        self.link("pkg-config")
        self.link(CC)
        self.mysql_headers()

    def run(self, mode: str, python: str = sys.executable, install: bool = False, **env: str):
        environ = {
            "PATH": str(self.bin),
            "HOME": str(self.root),
            "PYTHON": python,
            "PKG_CONFIG_LIBDIR": str(self.pc),
            "SYSTEM_DEPS_SBIN": str(self.sbin),
            **({} if install else {"SYSTEM_DEPS_INSTALL": "0"}),
            **env,
        }
        return subprocess.run(
            [BASH, str(SCRIPT), mode], env=environ, capture_output=True, text=True, timeout=120
        )


def missing_lines(result) -> list[str]:
    assert result.returncode == 1, result
    assert result.stdout == ""
    return result.stderr.splitlines()


def apt(what: str, package: str) -> str:
    return f"missing {what}: {SUDO}apt-get install -y {package}"


@pytest.fixture
def machine(tmp_path):
    return Machine(tmp_path)


def python_without(machine: Machine, what: str) -> str:
    """This Python with ensurepip hidden, or with its C headers in a folder that does not exist."""
    hide = {
        "ensurepip": "sys.modules['ensurepip'] = None",
        "Python.h": "import sysconfig; real = sysconfig.get_paths; "
        "sysconfig.get_paths = lambda *a, **k: {**real(*a, **k), 'include': '/nonexistent'}",
    }[what]
    # The script runs `$PYTHON -c CODE`: run CODE after the line that hides the piece.
    name = "python-without-" + what.replace(".", "-")
    return str(
        machine.fake(name, f'exec {sys.executable} -c "import sys; {hide}; exec(sys.argv[1])" "$2"')
    )


# ---------------------------------------------------------------- build: what `make setup` needs


def test_build_with_nothing_installed_names_each_piece_and_its_apt_command(machine):
    result = machine.run("build")
    assert missing_lines(result) == [
        apt(PKG_CONFIG, "pkg-config"),
        apt(HEADERS, "default-libmysqlclient-dev"),
        apt(COMPILER, "build-essential"),
    ]
    assert not machine.apt_calls.exists()  # reported, never installed


def test_build_with_everything_installed_is_silent(machine):
    machine.build_tools()
    result = machine.run("build")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("name", ["mysqlclient", "mariadb", "libmariadb"])
def test_the_headers_are_found_under_every_name_mysqlclients_build_tries(machine, name):
    machine.link("pkg-config")
    machine.link(CC)
    result = machine.run("build")
    assert missing_lines(result) == [apt(HEADERS, "default-libmysqlclient-dev")]
    machine.mysql_headers(name)
    assert machine.run("build").returncode == 0


def test_headers_without_pkg_config_are_looked_for_where_pkg_config_would(machine):
    machine.link(CC)
    machine.mysql_headers("mariadb")
    assert missing_lines(machine.run("build")) == [apt(PKG_CONFIG, "pkg-config")]


def test_the_flags_mysqlclient_accepts_instead_of_pkg_config_count_as_headers(machine):
    machine.link("pkg-config")
    machine.link(CC)
    result = machine.run(
        "build", MYSQLCLIENT_CFLAGS="-I/opt/my", MYSQLCLIENT_LDFLAGS="-L/opt/my -lmysqlclient"
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_a_compiler_that_cannot_compile_is_missing(machine):
    machine.build_tools()
    machine.remove(CC)
    machine.fake(CC, "exit 1")  # e.g. gcc without the C library's headers
    assert missing_lines(machine.run("build")) == [apt(COMPILER, "build-essential")]


def test_the_compiler_named_in_CC_is_the_one_checked(machine):
    machine.build_tools()
    result = machine.run("build", CC="clang-nowhere -O2")
    assert missing_lines(result) == [
        apt("a C compiler with the C library's headers (clang-nowhere)", "build-essential")
    ]


def test_python_without_ensurepip_needs_the_venv_package(machine):
    machine.build_tools()
    python = python_without(machine, "ensurepip")
    assert missing_lines(machine.run("build", python=python)) == [
        apt(f"Python's venv module ({python} -m venv needs venv and ensurepip)", f"python{PY}-venv")
    ]


def test_python_without_its_headers_needs_the_dev_package(machine):
    machine.build_tools()
    python = python_without(machine, "Python.h")
    assert missing_lines(machine.run("build", python=python)) == [
        apt(
            f"Python's C headers (Python.h for {python}; mysqlclient compiles against it)",
            f"python{PY}-dev",
        )
    ]


def test_no_python_at_all_is_one_line(machine):
    machine.build_tools()
    if CC != "cc":
        machine.link("cc")  # without Python to ask, the compiler is plain cc
    result = machine.run("build", python="")  # make found neither python3.11 nor python3
    assert missing_lines(result) == [
        apt(
            "Python 3.11 or newer (make looks for python3.11, then python3)",
            "python3 python3-dev python3-venv",
        )
    ]


# ---------------------------------------------------------------- demo and test: the servers


def test_demo_without_any_database_needs_the_mariadb_server(machine):
    machine.build_tools()
    machine.fake("mariadb", "exit 1")  # nothing lets root in on 127.0.0.1:3306
    assert missing_lines(machine.run("demo")) == [apt(SERVER_FOR_DEMO, "mariadb-server")]

    machine.fake("mariadbd", "exit 0", machine.sbin)
    assert missing_lines(machine.run("demo")) == [apt(SERVER_FOR_DEMO, "mariadb-server")]
    machine.fake("mariadb-install-db", "exit 0", machine.sbin)  # both: it can start a private one
    assert machine.run("demo").returncode == 0


@pytest.mark.parametrize(
    "database",
    [{"SESSION_STREAM_DB": "mysql://u:p@db.example:3306/warehouse"}, {"ROOT_LOGS_IN": "1"}],
    ids=["SESSION_STREAM_DB", "root on 127.0.0.1:3306"],
)
def test_demo_with_a_database_needs_no_server(machine, database):
    machine.build_tools()
    machine.fake("mariadb", '[ "$ROOT_LOGS_IN" = 1 ]')
    result = machine.run("demo", **database)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_tests_need_the_server_and_sshd(machine):
    machine.build_tools()
    machine.fake("mariadb", "exit 1")
    assert missing_lines(machine.run("test")) == [
        apt(SERVER_FOR_TESTS, "mariadb-server"),
        apt(SSHD, "openssh-server"),
    ]


def test_tests_need_a_client_to_check_the_server(machine):
    machine.build_tools()
    lines = missing_lines(machine.run("test"))
    assert apt(CLIENT, "mariadb-client") in lines
    assert apt(SSHD, "openssh-server") in lines


def test_tests_on_a_server_of_their_own_need_only_sshd(machine):
    machine.build_tools()
    machine.fake("sshd", "exit 0", machine.sbin)
    result = machine.run("test", SESSION_STREAM_TEST_SERVER="mysql://u:p@db.example:3306/test")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_ci_also_needs_docker_compose(machine):
    machine.build_tools()
    machine.fake("sshd", "exit 0", machine.sbin)
    result = machine.run("ci", SESSION_STREAM_TEST_SERVER="mysql://u:p@db.example:3306/test")
    assert missing_lines(result) == [
        apt("docker-compose (CI validates docker-compose.yaml with it)", "docker-compose")
    ]


def test_an_unknown_mode_is_a_usage_line(machine):
    result = machine.run("everything")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ")


# ---------------------------------------------------------------- other systems, and root


def test_on_macos_the_lines_say_brew(machine):
    machine.remove("apt-get")
    machine.fake("brew", "exit 0")
    assert missing_lines(machine.run("build")) == [
        f"missing {PKG_CONFIG}: brew install pkg-config",
        f'missing {HEADERS}: brew install mysql-client && export PKG_CONFIG_PATH="$(brew --prefix)/opt/mysql-client/lib/pkgconfig"',
        f"missing {COMPILER}: xcode-select --install",
    ]


def test_without_apt_or_brew_the_line_names_both_packages(machine):
    machine.remove("apt-get")
    machine.build_tools()
    machine.remove("pkg-config")
    assert missing_lines(machine.run("build")) == [
        f"missing {PKG_CONFIG}: install it with your package manager "
        "(Debian/Ubuntu: apt-get install -y pkg-config; macOS: brew install pkg-config)"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="installing is what root does")
def test_as_root_it_installs_what_is_missing_with_apt_get_and_checks_again(machine):
    machine.link(CC)
    machine.mysql_headers()
    # A fake apt-get: records its calls, and "installs" pkg-config by linking the real one.
    ln, pkg_config = shutil.which("ln"), shutil.which("pkg-config")
    machine.fake(
        "apt-get",
        f'echo "$DEBIAN_FRONTEND $*" >> {machine.apt_calls}\n'
        f'[ "$1" = install ] && {ln} -s {pkg_config} {machine.bin}/pkg-config\nexit 0',
    )
    result = machine.run("build", install=True)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "system-deps: installing pkg-config with apt-get\n",
        "",
    )
    assert machine.apt_calls.read_text().splitlines() == [
        "noninteractive update -qq",
        "noninteractive install -y -qq --no-install-recommends pkg-config",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="installing is what root does")
def test_as_root_what_apt_get_did_not_provide_is_still_reported(machine):
    machine.fake("apt-get", f'echo "$*" >> {machine.apt_calls}; exit 0')  # installs nothing
    machine.link(CC)
    machine.mysql_headers()
    result = machine.run("build", install=True)
    assert result.returncode == 1
    assert result.stdout == "system-deps: installing pkg-config with apt-get\n"
    assert result.stderr.splitlines() == [f"missing {PKG_CONFIG}: apt-get install -y pkg-config"]


# ---------------------------------------------------------------- the README's apt line


def test_the_readme_apt_line_is_what_the_script_installs_for_the_tests(machine):
    """The one line for non-root users names exactly the packages a bare machine needs."""
    named = set()
    for python in (python_without(machine, "ensurepip"), python_without(machine, "Python.h")):
        named.update(missing_lines(machine.run("test", python=python)))
    machine.fake("mariadb", "exit 1")  # with a client, the server it cannot log in to
    named.update(missing_lines(machine.run("test")))
    packages = {line.rsplit(" -y ", 1)[1] for line in named}
    packages = {re.sub(r"python3\.\d+", "python3.11", p) for p in packages}

    line = re.search(r"^sudo apt-get install -y (.*)$", README.read_text(), re.M)
    assert line, "the README lost its apt-get line"
    assert set(line.group(1).split()) == packages
