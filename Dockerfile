# gpudra container image: the node daemon (kubelet plugin) and the controller, one binary.
#   make image                      # docker build -t $(IMAGE) .
# Stage 1 builds the wheel from this checkout; stage 2 installs it (and only its runtime
# dependencies) into a virtualenv; the final stage copies that virtualenv onto the same slim
# base. The base is pinned to an exact Python/Debian release; pin it by digest in your own
# builds (--build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
RUN pip install --no-cache-dir "setuptools>=77" wheel
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation -w /dist .

FROM ${PYTHON_IMAGE} AS install
RUN python -m venv /opt/gpudra
COPY --from=wheel /dist /dist
RUN /opt/gpudra/bin/pip install --no-cache-dir /dist/*.whl \
 && /opt/gpudra/bin/pip uninstall -y pip \
 && /opt/gpudra/bin/gpudra --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="gpudra" \
      org.opencontainers.image.description="Kubernetes DRA GPU driver: node daemon and controller" \
      org.opencontainers.image.source="https://github.com/gpudra/gpudra" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=install /opt/gpudra /opt/gpudra
ENV PATH=/opt/gpudra/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Non-root by default (the controller needs nothing else). The node daemon's pod runs as root
# (uid 0, all capabilities dropped in mock mode) because the kubelet's directories are
# root-owned; the Helm chart sets that per container.
USER 65532:65532
ENTRYPOINT ["gpudra"]
CMD ["--help"]
