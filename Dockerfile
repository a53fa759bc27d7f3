# The session-stream image: Airflow 3.3.2, its providers and the engine. ONE image serves every
# Airflow service of docker-compose.yaml and its one-shot helpers (stack-init, cli, the test fakes).
#
#   docker compose build            (or: docker build -t session-stream .)
#
# It holds the runtime lock only: requirements.txt (what session-stream runs on) plus
# docker/requirements-stack.txt (PostgreSQL, Celery, FAB: what only the stack needs), both pinned
# with hashes. The test tools (requirements-dev.txt) never enter it. Nothing is installed when a
# container starts.
#
# Layers are ordered so that the slow ones are rebuilt only when the locks change: editing dags/,
# plugins/ or include/ rebuilds the last few small layers (seconds).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: compilers and headers live in these stages only -------------------------------------
FROM ${PYTHON_IMAGE} AS build
# mysqlclient is the one package of the locks with no Linux wheel on PyPI: it builds against
# MariaDB Connector/C (default-libmysqlclient-dev is libmariadb-dev). Every other package
# installs from its wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config default-libmysqlclient-dev \
    && rm -rf /var/lib/apt/lists/*
# uv installs the ~350 pinned packages in a fraction of pip's time; it stays in these stages.
# UV_SYSTEM_CERTS: trust the system's CA store, as pip does (a TLS-inspecting proxy's CA is there).
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1 UV_SYSTEM_CERTS=1
RUN python -m venv /opt/tools && /opt/tools/bin/pip install -q uv==0.13.8

# The dependencies: rebuilt only when a lock changes.
FROM build AS deps
COPY requirements.txt docker/requirements-stack.txt /tmp/locks/
# --require-hashes: every file is the one the locks name. --compile-bytecode: the services run as
# a user who cannot write __pycache__ here, and Airflow imports twice as fast from .pyc files.
RUN python -m venv /opt/venv \
    && /opt/tools/bin/uv pip install --python /opt/venv/bin/python --require-hashes --compile-bytecode \
        -r /tmp/locks/requirements.txt -r /tmp/locks/requirements-stack.txt

# The engine as a wheel, in a stage of its own: a code change leaves the dependencies' layers be.
FROM build AS engine
COPY pyproject.toml /src/pyproject.toml
COPY include /src/include
RUN /opt/tools/bin/uv build --quiet --wheel --out-dir /wheels /src

# ---- runtime -----------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# libmariadb3 is mysqlclient's client library (MariaDB Connector/C): it carries the
# caching_sha2_password plugin MySQL 8.4's accounts use; the stack logs in over TLS, where that
# plugin needs no RSA key exchange. curl is for the health checks. tini is PID 1: it reaps the
# processes Airflow's task runners leave behind (compose's `init: true` needs podman's catatonit,
# which not every podman host has).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 curl tini \
    && rm -rf /var/lib/apt/lists/*
# Same convention as the official Airflow image: user airflow, uid 50000, group 0, and folders
# writable by group 0, so the services also run as another uid (AIRFLOW_UID in .env) in group 0.
RUN useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow \
    && mkdir -p /opt/airflow/dags /opt/airflow/plugins /opt/airflow/include /opt/airflow/logs \
       /opt/airflow/staging /opt/session-stream \
    && chown -R airflow:0 /opt/airflow /home/airflow && chmod -R g+rwX /opt/airflow /home/airflow
COPY --from=deps /opt/venv /opt/venv
COPY --from=engine /wheels /tmp/wheels
RUN /opt/venv/bin/python -m pip install -q --no-deps --no-index --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
COPY docker/stack/ /opt/session-stream/
# The DAGs, plugins and engine source are baked in so the image runs without bind mounts;
# docker-compose.yaml mounts the working copies over them for development.
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 include /opt/airflow/include
# PYTHONPATH: the include/ folder (baked in, or mounted for development) wins over the installed
# copy of the engine, so engine edits apply without a rebuild. USER and HOME: a uid with no
# passwd entry (AIRFLOW_UID) still has a user name and a home.
ENV PATH=/opt/venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/airflow/include \
    USER=airflow \
    HOME=/home/airflow
USER airflow
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/tini", "--", "airflow"]
CMD ["version"]
