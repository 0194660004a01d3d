# syntax=docker/dockerfile:1.7
# The wma model server: `wma model-server` with the mock and Effort (PyTorch) backends.
#
#   docker build -f docker/model-server.Dockerfile -t wma-model-server:dev .                    # CPU
#   docker build -f docker/model-server.Dockerfile --build-arg BASE=cuda -t wma-model-server:cuda .
#
# BASE=cpu installs the CPU PyTorch wheels; BASE=cuda installs the CUDA 12.4
# wheels, which carry the CUDA runtime, cuDNN and NCCL as pip packages, so the
# final image needs only the node's NVIDIA driver (mounted by the NVIDIA
# container runtime). Both variants share the slim Python runtime stage: no
# compiler, no build tools, no pip in the final image.

ARG BASE=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment with the project and its torch extra ----
# torch-${BASE} and runtime-${BASE} below are stages of this file picked by BASE
# (BuildKit builds only the stages the target needs), not image tags.
FROM ${PYTHON_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip setuptools wheel

FROM venv AS torch-cpu
RUN /opt/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.2,<3"

FROM venv AS torch-cuda
ARG CUDA_WHEELS=cu124
RUN /opt/venv/bin/pip install --index-url https://download.pytorch.org/whl/${CUDA_WHEELS} "torch>=2.2,<3"

# hadolint ignore=DL3006
FROM torch-${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY calibrators/wma_calibrators ./calibrators/wma_calibrators
RUN /opt/venv/bin/pip install ".[torch]" \
 && /opt/venv/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime-cpu

FROM ${PYTHON_IMAGE} AS runtime-cuda
# Read by the NVIDIA container runtime: expose the GPUs and the compute libraries.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# hadolint ignore=DL3006
FROM runtime-${BASE} AS runtime
LABEL org.opencontainers.image.title="wma-model-server" \
      org.opencontainers.image.description="wma-ensemble model server (legacy API + OIP v2)" \
      org.opencontainers.image.source="https://github.com/wma/wma-ensemble"
# The base image's own pip/setuptools/wheel go too: nothing in the final image can
# install or build packages (the venv's were removed in the build stage).
RUN python -m pip uninstall -y pip setuptools wheel \
 && groupadd --system --gid 10001 wma \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin wma
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    WMA_HEALTH_PORT=8000
USER 10001:10001
EXPOSE 8000
# Kubernetes uses its own probes; this serves `docker run` and compose.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/live' % os.environ.get('WMA_HEALTH_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["wma"]
CMD ["model-server", "--model-id", "mock", "--backend", "mock", "--host", "0.0.0.0", "--port", "8000"]
