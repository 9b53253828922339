# syntax=docker/dockerfile:1
# One image for Sluice's five services and the sandbox simulators; the command picks the module:
#   docker run IMAGE services.analyzer      (the default)
#   docker run IMAGE services.watcher | services.traffic_shifter | services.webhook_runner | ...
# Proven offline (no container engine on the build machines): tests/deploy/test_container.py
# lints this file with hadolint and checks what it references.

# A precise tag, not a digest: no digest was verified on a machine without a registry client.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/sluice
COPY pyproject.toml requirements.lock README.md ./
# requirements.lock also pins the dev extra (pytest, ruff, mypy, hadolint, ...): install only
# the runtime part (see deploy/compose/runtime-lock.py), hashes still checked, nothing resolved
# anew (--no-deps), and `pip check` fails the build if the subset missed a dependency.
COPY deploy/compose/runtime-lock.py ./
RUN python runtime-lock.py pyproject.toml requirements.lock runtime.lock
RUN /opt/sluice/bin/pip install --require-hashes --no-deps -r runtime.lock \
    && /opt/sluice/bin/pip check
COPY libs ./libs
COPY services ./services
COPY sandbox ./sandbox
COPY cli ./cli
RUN /opt/sluice/bin/pip install --no-deps . \
    && /opt/sluice/bin/pip check

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="Progressive delivery for Apache APISIX: a Flagger-compatible canary controller built as five services over NATS" \
      org.opencontainers.image.source="https://github.com/sluice/sluice" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PATH=/opt/sluice/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SLUICE_HEALTH_HOST=0.0.0.0 \
    SLUICE_HEALTH_PORT=8081
COPY --from=builder /opt/sluice /opt/sluice
WORKDIR /app
# The source as well as the installed package: `python -m services.<name>` and `sandbox.*`
# run from /app exactly as in the repository.
COPY libs ./libs
COPY services ./services
COPY sandbox ./sandbox
COPY cli ./cli
USER 10001:10001
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m"]
CMD ["services.analyzer"]
