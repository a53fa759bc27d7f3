# The session-stream image: Airflow 3.3.2, its providers and the engine, all from the repo's locks.
# Used by every Airflow service of docker-compose.yaml and by the one-shot helpers (sftp-init, cli).
#
#   docker compose build            (or: docker build -t session-stream .)
#
# Dependencies come from requirements.txt (the project's lock) plus docker/requirements-stack.txt
# (PostgreSQL, Celery, FAB: only the stack needs them, pinned against the same lock), installed at
# build time: nothing is pip-installed when a container starts.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: compilers and headers live here only (mysqlclient builds from source) ----------------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config default-libmysqlclient-dev \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/locks/requirements.txt
COPY docker/requirements-stack.txt /tmp/locks/requirements-stack.txt
RUN pip install -r /tmp/locks/requirements.txt -r /tmp/locks/requirements-stack.txt
# The engine last, without dependencies: the locks above already pinned them.
COPY pyproject.toml /src/pyproject.toml
COPY include /src/include
RUN pip install --no-deps /src

# ---- runtime ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# libmariadb3 is mysqlclient's client library; it ships the caching_sha2_password plugin that
# MySQL 8.4's default accounts need. curl is for health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 curl \
    && rm -rf /var/lib/apt/lists/*
# Same uid/gid convention as the official Airflow image (uid 50000, group 0), so volumes made for
# one work with the other. The folders are created here, owned by airflow, so that named volumes
# mounted on them start out writable by it.
RUN useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow \
    && mkdir -p /opt/airflow/dags /opt/airflow/plugins /opt/airflow/include /opt/airflow/logs \
       /opt/airflow/staging /opt/session-stream \
    && chown -R airflow:0 /opt/airflow && chmod -R g+rwX /opt/airflow
COPY --from=build /opt/venv /opt/venv
# The DAGs, plugins and engine source are baked in so the image runs without bind mounts;
# docker-compose.yaml mounts the working copies over them for development.
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 include /opt/airflow/include
COPY docker/stack/ /opt/session-stream/
# PYTHONPATH: the include/ folder (baked in, or mounted for development) wins over the installed
# copy of the engine, so engine edits apply without a rebuild.
ENV PATH=/opt/venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/airflow/include
USER airflow
WORKDIR /opt/airflow
ENTRYPOINT ["airflow"]
CMD ["version"]
