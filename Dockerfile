# syntax=docker/dockerfile:1
# The replica worker for ECS: the KCL MultiLangDaemon (Java 17) running the Python record
# processor (kcl_consumer.worker) of one replica target. docs/ECS.md has the task definition.
#
#   docker build -t lazyrep-worker --build-arg TOPOLOGY=examples/topology.toml .
#   docker run lazyrep-worker --properties /etc/lazyrep/properties/eu.properties
#
# `lazyrep kcl run` execs java, so the JVM is PID 1 and receives ECS's SIGTERM itself: its
# shutdown hook gives each processor shutdownRequested (they checkpoint what they applied)
# for shutdownGraceMillis, which the properties set STOP_TIMEOUT - 10 s. Give the task
# definition's container the same stopTimeout (STOP_TIMEOUT, at most 120 s).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG MAVEN_IMAGE=maven:3.9-eclipse-temurin-17

# 1. The KCL jars: exactly kcl_consumer/pom.xml's list, by Maven with strict checksums
#    (as scripts/bootstrap.py does locally). A jar whose checksum does not match fails here.
FROM ${MAVEN_IMAGE} AS jars
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /build
COPY kcl_consumer/pom.xml pom.xml
RUN mvn -B -ntp -q --strict-checksums -Dmaven.repo.local=/build/m2 -f pom.xml \
        dependency:copy-dependencies -DexcludeTransitive=true -DoutputDirectory=/build/jars \
    && expected="$(grep -c '<dependency>' pom.xml)" \
    && got="$(find /build/jars -name '*.jar' | wc -l)" \
    && if [ "$expected" != "$got" ]; then \
        echo "Maven copied $got jars, the pom lists $expected" >&2; exit 1; fi

# 2. The virtualenv: amazon-kclpy and this project. kclpy's setup.py downloads the jars of
#    its own pom from KCL_MVN_REPO_SEARCH_URL: point it at the repository Maven verified
#    in stage 1, so nothing unverified comes in; its copy is then dropped (stage 1's is used).
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/lazyrep/venv
COPY --from=jars /build/m2 /build/m2
RUN KCL_MVN_REPO_SEARCH_URL=file:///build/m2/ \
    /opt/lazyrep/venv/bin/pip install --no-compile amazon-kclpy==3.1.3
WORKDIR /src
COPY pyproject.toml README.md ./
COPY binlog binlog
COPY producer producer
COPY lambda_consumer lambda_consumer
COPY kcl_consumer kcl_consumer
COPY emulators emulators
COPY lazyrep lazyrep
RUN /opt/lazyrep/venv/bin/pip install --no-compile ".[kcl]" \
    && rm -rf /opt/lazyrep/venv/lib/python3.11/site-packages/amazon_kclpy/jars

# 3. The runtime: Debian's JRE 17 (security updates through apt), the venv, the jars, the
#    topology and one properties file per replica target, generated from that topology.
FROM ${PYTHON_IMAGE}
# Debian's package versions move with security updates; pinning them would break builds.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lazyrep
COPY --from=build /opt/lazyrep/venv /opt/lazyrep/venv
COPY --from=jars /build/jars /opt/lazyrep/jars
ENV PATH=/opt/lazyrep/venv/bin:$PATH \
    LAZYREP_KCL_JARS=/opt/lazyrep/jars \
    LAZYREP_KCL_TEMPLATE=/etc/lazyrep/local.properties \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    JAVA_TOOL_OPTIONS="-XX:MaxRAMPercentage=40 -XX:+ExitOnOutOfMemoryError"

# The deployment's topology (any file in the build context that .dockerignore lets in).
ARG TOPOLOGY=examples/topology.toml
ARG STOP_TIMEOUT=60
ARG RETRIEVAL_MODE=POLLING
COPY ${TOPOLOGY} /etc/lazyrep/topology.toml
# `lazyrep replica run` (local stacks, docker-compose) fills this template.
COPY properties/local.properties /etc/lazyrep/local.properties
RUN lazyrep properties --topology /etc/lazyrep/topology.toml --out /etc/lazyrep/properties \
        --stop-timeout "${STOP_TIMEOUT}" --retrieval-mode "${RETRIEVAL_MODE}" \
        --python /opt/lazyrep/venv/bin/python --worker-topology /etc/lazyrep/topology.toml

USER 10001
WORKDIR /tmp
STOPSIGNAL SIGTERM
# The task definition's command picks the replica: ["--properties", "/etc/lazyrep/properties/eu.properties"]
ENTRYPOINT ["lazyrep", "kcl", "run"]
