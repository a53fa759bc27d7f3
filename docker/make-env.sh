#!/bin/sh
# Write a .env from .env.example with a fresh random value for every secret.
#   docker/make-env.sh            writes .env (refuses to overwrite an existing one)
#   docker/make-env.sh PATH       writes PATH instead (scripts/stack_test.py: a temporary .env)
# Needs only openssl. Passwords are hex, so they are safe inside URLs. On Linux, the containers
# run as your uid (AIRFLOW_UID), as the official Airflow compose file advises, unless you are root.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/.env}
if [ -e "$out" ]; then
    echo "make-env: $out already exists; move it away first (its secrets must match your volumes)" >&2
    exit 1
fi
hex() { openssl rand -hex 24; }
fernet=$(openssl rand -base64 32 | tr '+/' '-_')
uid=$(id -u)
if [ "$(uname -s)" = Linux ] && [ "$uid" != 0 ]; then
    airflow_uid="s/^#AIRFLOW_UID=.*/AIRFLOW_UID=$uid/"
else
    airflow_uid="s/^#AIRFLOW_UID=/#AIRFLOW_UID=/"
fi
umask 077
sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(hex)/" \
    -e "s/^MYSQL_ROOT_PASSWORD=.*/MYSQL_ROOT_PASSWORD=$(hex)/" \
    -e "s/^WAREHOUSE_OWNER_PASSWORD=.*/WAREHOUSE_OWNER_PASSWORD=$(hex)/" \
    -e "s/^WAREHOUSE_LOADER_PASSWORD=.*/WAREHOUSE_LOADER_PASSWORD=$(hex)/" \
    -e "s/^WAREHOUSE_ANALYST_PASSWORD=.*/WAREHOUSE_ANALYST_PASSWORD=$(hex)/" \
    -e "s/^AIRFLOW_ADMIN_PASSWORD=.*/AIRFLOW_ADMIN_PASSWORD=$(hex)/" \
    -e "s|^AIRFLOW_FERNET_KEY=.*|AIRFLOW_FERNET_KEY=${fernet}|" \
    -e "s/^AIRFLOW_JWT_SECRET=.*/AIRFLOW_JWT_SECRET=$(hex)$(hex)/" \
    -e "s/^AIRFLOW_API_SECRET_KEY=.*/AIRFLOW_API_SECRET_KEY=$(hex)$(hex)/" \
    -e "$airflow_uid" \
    "$repo/.env.example" > "$out"
echo "make-env: wrote $out (mode 600). The Airflow admin password is AIRFLOW_ADMIN_PASSWORD in it."
