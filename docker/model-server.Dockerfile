# The wma model server: `wma model-server` with the mock and Effort (PyTorch) backends.
#
#   bash scripts/build-images.sh            # wheelhouses, then both images (wma-*:dev)
#
# or by hand, after `bash scripts/wheelhouse.sh model-server`:
#
#   docker build -f docker/model-server.Dockerfile -t wma-model-server:dev .
#
# Every Python package comes from build/wheelhouse/<LOCK>/, built on the host
# from requirements/<LOCK>.lock (hashes checked again here): the build needs no
# network and no registry-fetched frontend, and the legacy builder works too.
# LOCK=model-server is the CPU build of torch. The CUDA variant is the same file
# with a lock whose torch is a CUDA build (docs/deploy.md, "Images"):
#   --build-arg LOCK=model-server-cuda --build-arg NVIDIA_VISIBLE_DEVICES=all
# Its torch wheels carry the CUDA runtime, cuDNN and NCCL, so the image needs only
# the node's NVIDIA driver (mounted by the NVIDIA container runtime).
# PYTHON_IMAGE is any Debian-based image with python3 (3.11) and venv: the
# official slim image by default, or one made from Debian packages alone by
# scripts/base-image.sh where no registry can be reached.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment with the project and its model-server and torch extras ----
FROM ${PYTHON_IMAGE} AS build
ARG LOCK=model-server
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
COPY build/wheelhouse/${LOCK} /wheels
COPY requirements/${LOCK}.lock requirements/build.lock /src/requirements/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes -r /src/requirements/build.lock \
 && /opt/venv/bin/pip install --require-hashes -r /src/requirements/${LOCK}.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY calibrators/wma_calibrators ./calibrators/wma_calibrators
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime
# Read by the NVIDIA container runtime: which GPUs to expose (none unless set).
ARG NVIDIA_VISIBLE_DEVICES=void
LABEL org.opencontainers.image.title="wma-model-server" \
      org.opencontainers.image.description="wma-ensemble model server (legacy API + OIP v2)" \
      org.opencontainers.image.source="https://github.com/wma/wma-ensemble"
# The base image's own pip/setuptools/wheel go too: nothing in the final image can
# install or build packages (the venv's were removed in the build stage).
RUN if python -m pip --version >/dev/null 2>&1; then python -m pip uninstall -y pip setuptools wheel; fi \
 && groupadd --system --gid 10001 wma \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin wma
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    NVIDIA_VISIBLE_DEVICES=${NVIDIA_VISIBLE_DEVICES} \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    WMA_HEALTH_PORT=8000
USER 10001:10001
EXPOSE 8000
# Kubernetes uses its own probes; this serves `docker run` and compose.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/live' % os.environ.get('WMA_HEALTH_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["wma"]
CMD ["model-server", "--model-id", "mock", "--backend", "mock", "--host", "0.0.0.0", "--port", "8000"]
