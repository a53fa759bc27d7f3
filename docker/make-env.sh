#!/bin/sh
# Write .env from .env.example with a fresh random value for every secret.
#   docker/make-env.sh            (refuses to overwrite an existing .env)
# Needs only openssl. Passwords are hex, so they are safe inside URLs.
set -eu
cd "$(dirname "$0")/.."
if [ -e .env ]; then
    echo "make-env: .env already exists; move it away first (its secrets must match your volumes)" >&2
    exit 1
fi
hex() { openssl rand -hex 24; }
fernet=$(openssl rand -base64 32 | tr '+/' '-_')
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
    .env.example > .env
echo "make-env: wrote .env (mode 600). The Airflow admin password is AIRFLOW_ADMIN_PASSWORD in it."
