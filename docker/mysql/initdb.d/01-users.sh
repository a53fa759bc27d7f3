# shellcheck shell=bash
# Sourced by the mysql image's entrypoint on the first start (empty data directory), before
# 02-warehouse.sql, which grants these accounts their rights. Passwords come from the environment
# (.env); the SQL reaches the server on stdin and docker_process_sql passes root's password in a
# temporary defaults file, so no password is ever on a command line or in the process list.

: "${WAREHOUSE_OWNER_PASSWORD:?set WAREHOUSE_OWNER_PASSWORD in .env (see .env.example)}"
: "${WAREHOUSE_LOADER_PASSWORD:?set WAREHOUSE_LOADER_PASSWORD in .env (see .env.example)}"
: "${WAREHOUSE_ANALYST_PASSWORD:?set WAREHOUSE_ANALYST_PASSWORD in .env (see .env.example)}"

# A single-quoted SQL string literal (backslashes and quotes escaped). printf is a shell builtin.
_warehouse_sql_string() {
	local value=${1//\\/\\\\}
	printf "'%s'" "${value//\'/\\\'}"
}

mysql_note "Creating the warehouse accounts owner, loader and analyst"
# REQUIRE SSL: passwords and data never cross the network in clear, and MySQL 8.4's default
# caching_sha2_password logs in over TLS without the RSA key exchange a plain connection needs.
docker_process_sql <<EOSQL
CREATE USER IF NOT EXISTS 'owner'@'%' IDENTIFIED BY $(_warehouse_sql_string "$WAREHOUSE_OWNER_PASSWORD") REQUIRE SSL;
CREATE USER IF NOT EXISTS 'loader'@'%' IDENTIFIED BY $(_warehouse_sql_string "$WAREHOUSE_LOADER_PASSWORD") REQUIRE SSL;
-- BI tools open connection pools; a cap keeps one runaway dashboard from starving the loader.
CREATE USER IF NOT EXISTS 'analyst'@'%' IDENTIFIED BY $(_warehouse_sql_string "$WAREHOUSE_ANALYST_PASSWORD") REQUIRE SSL
  WITH MAX_USER_CONNECTIONS 20;
EOSQL
