#!/usr/bin/env bash
# The system pieces session-stream needs, listed once. `make` runs this before it builds .venv/
# (pip would otherwise stop in a 30-line mysqlclient build trace), and .ci/run runs it on CI.
#
#   scripts/system-deps.sh build   what `make setup` needs: mysqlclient compiles from source
#   scripts/system-deps.sh demo    build + a MariaDB server for the demo's private one, unless the
#                                  demo has a database (SESSION_STREAM_DB, or root on 127.0.0.1:3306)
#   scripts/system-deps.sh test    build + MariaDB server and client and sshd for the tests, and a
#                                  server answering on 127.0.0.1:3306 as root with no password
#                                  (unless SESSION_STREAM_TEST_SERVER names another one)
#   scripts/system-deps.sh ci      test + docker-compose (CI validates docker-compose.yaml)
#
# As root on Debian/Ubuntu it installs what is missing with apt-get, starts MariaDB and lets root
# log in over loopback as the tests expect. Otherwise it prints one line per missing piece with the
# command that installs it and exits 1. Nothing missing: it prints nothing.
#
# Environment: PYTHON (the interpreter make builds .venv/ with; default as in the Makefile),
# SYSTEM_DEPS_INSTALL=0 (report, never install, even as root), SYSTEM_DEPS_SBIN (where to look for
# daemons besides PATH, which often lacks /usr/sbin), SESSION_STREAM_DB, SESSION_STREAM_TEST_SERVER.
# Bash builtins only, beyond the tools it checks: it runs before anything else is known to exist.
set -euo pipefail

mode=${1:-build}
case $mode in
  build | demo | test | ci) ;;
  *)
    echo "usage: $0 [build|demo|test|ci]" >&2
    exit 2
    ;;
esac

PYTHON=${PYTHON:-}
SBIN_DIRS=${SYSTEM_DEPS_SBIN-/usr/sbin:/usr/local/sbin:/usr/local/bin:/opt/homebrew/bin:/usr/local/mysql/bin}
PC_NAMES=(mysqlclient mariadb libmariadb perconaserverclient) # the names mysqlclient's setup.py tries
LOCAL_DB=(127.0.0.1 3306) # where the tests' default server and the demo look first

have() { command -v "$1" >/dev/null 2>&1; }

# The first of the names found on PATH or in SBIN_DIRS, printed.
find_daemon() {
  local name dir dirs
  IFS=: read -ra dirs <<<"$SBIN_DIRS"
  for name; do
    if have "$name"; then
      command -v "$name"
      return 0
    fi
    for dir in "${dirs[@]}"; do
      [[ -n $dir && -x $dir/$name ]] && echo "$dir/$name" && return 0
    done
  done
  return 1
}

py() { [[ -n $PYTHON ]] && "$PYTHON" -c "$1" 2>/dev/null; }

client() { find_daemon mariadb mysql; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Root logs in on 127.0.0.1:3306 with no password; without a client to ask, an open port will do.
local_root_login() {
  local c
  if c=$(client); then
    "$c" --connect-timeout=3 -h "${LOCAL_DB[0]}" -P "${LOCAL_DB[1]}" -uroot -e "SELECT 1" >/dev/null 2>&1
  else
    port_open "${LOCAL_DB[@]}"
  fi
}

# ---------------------------------------------------------------- the pieces

missing=() # one "description|Debian packages|macOS command" per missing piece

need() { missing+=("$1|$2|$3"); }

mysql_headers_found() {
  [[ -n ${MYSQLCLIENT_CFLAGS:-} && -n ${MYSQLCLIENT_LDFLAGS:-} ]] && return 0 # setup.py's override
  local name dir dirs
  if have pkg-config; then
    for name in "${PC_NAMES[@]}"; do pkg-config --exists "$name" && return 0; done
    return 1
  fi
  # No pkg-config to ask (that is reported on its own line): look where it would.
  IFS=: read -ra dirs <<<"${PKG_CONFIG_PATH:-}:${PKG_CONFIG_LIBDIR-/usr/local/lib/pkgconfig:/usr/lib/pkgconfig:/usr/share/pkgconfig:/usr/lib64/pkgconfig}"
  [[ -z ${PKG_CONFIG_LIBDIR+set} ]] && dirs+=(/usr/lib/*/pkgconfig)
  for dir in "${dirs[@]}"; do
    for name in "${PC_NAMES[@]}"; do [[ -n $dir && -f $dir/$name.pc ]] && return 0; done
  done
  return 1
}

check_build() {
  [[ -n $PYTHON ]] || PYTHON=$(command -v python3.11 || command -v python3 || true) # as the Makefile picks
  # One interpreter start (pyenv's shims are slow): version, venv + ensurepip, Python.h, compiler.
  local facts=() v
  mapfile -t facts <<<"$(py '
import os, sys, sysconfig
try:
    import ensurepip, venv
    venv_ok = 1
except ImportError:  # Debian ships ensurepip in python3.X-venv
    venv_ok = 0
print("%d.%d" % sys.version_info[:2], venv_ok)
print(int(os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))))
print(sysconfig.get_config_var("CC") or "")' || true)"
  if [[ -z ${facts[0]} ]]; then
    need "Python 3.11 or newer (make looks for python3.11, then python3)" \
      "python3 python3-dev python3-venv" "brew install python@3.11"
  else
    v=${facts[0]% *}
    [[ ${facts[0]#* } == 1 ]] ||
      need "Python's venv module ($PYTHON -m venv needs venv and ensurepip)" \
        "python$v-venv" "brew install python@$v"
    [[ ${facts[1]} == 1 ]] ||
      need "Python's C headers (Python.h for $PYTHON; mysqlclient compiles against it)" \
        "python$v-dev" "brew install python@$v"
  fi

  have pkg-config || need "pkg-config (mysqlclient's build asks it for the MySQL client library)" \
    "pkg-config" "brew install pkg-config"
  # shellcheck disable=SC2016 # the brew line is printed for the user to run, not expanded here
  mysql_headers_found || need "MySQL client headers (pkg-config knows none of ${PC_NAMES[*]})" \
    "default-libmysqlclient-dev" \
    'brew install mysql-client && export PKG_CONFIG_PATH="$(brew --prefix)/opt/mysql-client/lib/pkgconfig"'

  # The compiler setuptools will call: $CC, else the one Python was built with.
  local cc_cmd
  read -ra cc_cmd <<<"${CC:-${facts[2]:-cc}}"
  { have "${cc_cmd[0]}" && printf '#include <stdio.h>\nint main(void) { return 0; }\n' |
    "${cc_cmd[@]}" -x c -fsyntax-only - >/dev/null 2>&1; } ||
    need "a C compiler with the C library's headers (${cc_cmd[0]})" "build-essential" "xcode-select --install"
}

# A MariaDB/MySQL server to start, unless the database the caller needs already answers.
check_server() { # $1: why a server is needed
  if [[ $mode == demo ]]; then
    [[ -n ${SESSION_STREAM_DB:-} ]] && return 0
  else
    [[ -n ${SESSION_STREAM_TEST_SERVER:-} ]] && return 0
    client >/dev/null || need "MariaDB client (mariadb or mysql; sets up and checks the test server)" \
      "mariadb-client" "brew install mariadb"
  fi
  local_root_login && return 0
  { find_daemon mariadbd mysqld && find_daemon mariadb-install-db mysql_install_db; } >/dev/null ||
    need "MariaDB server (mariadbd and mariadb-install-db; $1)" "mariadb-server" "brew install mariadb"
}

check() {
  missing=()
  check_build
  case $mode in
    demo) check_server "the demo starts a private one" ;;
    test | ci)
      check_server "the tests use one on 127.0.0.1:3306"
      find_daemon sshd >/dev/null ||
        need "OpenSSH server (sshd; the SFTP tests start their own)" "openssh-server" "brew install openssh"
      ;;
  esac
  if [[ $mode == ci ]]; then
    have docker-compose || need "docker-compose (CI validates docker-compose.yaml with it)" \
      "docker-compose" "brew install docker-compose"
  fi
  return 0
}

may_change_system() { [[ $EUID -eq 0 && ${SYSTEM_DEPS_INSTALL:-1} != 0 ]]; }

# One line per piece: what is missing and the command that installs it.
report() {
  local sudo="" line what debian mac
  [[ $EUID -ne 0 ]] && sudo="sudo "
  for line in "${missing[@]}"; do
    IFS='|' read -r what debian mac <<<"$line"
    if have apt-get; then
      echo "missing $what: ${sudo}apt-get install -y $debian"
    elif have brew; then
      echo "missing $what: $mac"
    else
      echo "missing $what: install it with your package manager (Debian/Ubuntu: apt-get install -y $debian; macOS: $mac)"
    fi
  done >&2
}

install_missing() {
  local line what debian mac p packages=() seen=" "
  for line in "${missing[@]}"; do
    IFS='|' read -r what debian mac <<<"$line"
    for p in $debian; do
      [[ $seen == *" $p "* ]] || packages+=("$p")
      seen+="$p "
    done
  done
  echo "system-deps: installing ${packages[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}

check
if ((${#missing[@]})) && may_change_system && have apt-get; then
  install_missing
  check
fi
if ((${#missing[@]})); then
  report
  exit 1
fi

# ---------------------------------------------------------------- the tests' server

[[ $mode == test || $mode == ci ]] || exit 0
[[ -z ${SESSION_STREAM_TEST_SERVER:-} ]] || exit 0 # the tests use the server named there

sql() { "$(client)" "$@"; }

if ! port_open "${LOCAL_DB[@]}"; then
  started=""
  if may_change_system; then
    if [[ -d /run/systemd/system ]] && have systemctl; then
      echo "system-deps: starting MariaDB (systemctl start mariadb)"
      systemctl start mariadb || true
      started="journalctl -u mariadb"
    elif have start-stop-daemon && server=$(find_daemon mariadbd mysqld); then
      # No systemd (a container, a chroot, CI): start it as the package's service would. The pid
      # file tells the system server from others of the same binary (the demo's private one).
      echo "system-deps: starting $server (nothing answers on ${LOCAL_DB[0]}:${LOCAL_DB[1]})"
      mkdir -p /run/mysqld /var/log/mysql
      chown mysql:mysql /run/mysqld /var/log/mysql 2>/dev/null || true
      start-stop-daemon --start --oknodo --background --pidfile /run/mysqld/mysqld.pid \
        --exec "$server" -- --user=mysql --pid-file=/run/mysqld/mysqld.pid \
        --log-error=/var/log/mysql/error.log
      started="/var/log/mysql/error.log"
    fi
  fi
  if [[ -n $started ]]; then
    for _ in {1..60}; do
      port_open "${LOCAL_DB[@]}" && break
      sleep 1
    done
  fi
  if ! port_open "${LOCAL_DB[@]}"; then
    if [[ -n $started ]]; then
      echo "system-deps: MariaDB did not answer on ${LOCAL_DB[0]}:${LOCAL_DB[1]} within 60 s of starting it: see $started" >&2
    else
      start="sudo systemctl start mariadb"
      have brew && start="brew services start mariadb"
      echo "missing a MariaDB server answering on ${LOCAL_DB[0]}:${LOCAL_DB[1]} (the tests' server): $start" >&2
    fi
    exit 1
  fi
fi

# A fresh Debian install lets root in only through the socket; the tests log in over TCP. A server
# that resolves names sees 127.0.0.1 as root@localhost, one with skip-name-resolve (as CI's) as
# root@127.0.0.1: both get an empty password, and root@localhost keeps its socket login.
if ! local_root_login; then
  client_name=$(client) && client_name=${client_name##*/}
  logins="ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION"
  if may_change_system && sql -uroot -e "$logins" && local_root_login; then
    echo "system-deps: MariaDB root now logs in from this machine with no password, as the tests expect"
  else
    echo "missing a MariaDB login as root with no password on ${LOCAL_DB[0]}:${LOCAL_DB[1]} (the tests' server): sudo $client_name -uroot -e \"$logins\" (or set SESSION_STREAM_TEST_SERVER=mysql://user:password@host:port/database)" >&2
    exit 1
  fi
fi

# LOAD DATA LOCAL needs local_infile on the server (MySQL 8 ships with it off).
if [[ $(sql -N -h "${LOCAL_DB[0]}" -P "${LOCAL_DB[1]}" -uroot -e "SELECT @@GLOBAL.local_infile") != 1 ]]; then
  if may_change_system; then
    sql -h "${LOCAL_DB[0]}" -P "${LOCAL_DB[1]}" -uroot -e "SET GLOBAL local_infile = 1"
    echo "system-deps: turned local_infile on in MariaDB (LOAD DATA LOCAL needs it)"
  else
    echo "missing local_infile=ON in the server on ${LOCAL_DB[0]}:${LOCAL_DB[1]} (LOAD DATA LOCAL needs it): mariadb -h ${LOCAL_DB[0]} -uroot -e \"SET GLOBAL local_infile = 1\"" >&2
    exit 1
  fi
fi
