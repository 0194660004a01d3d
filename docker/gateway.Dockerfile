# The wma fusion gateway: `wma gateway --config /etc/wma/gateway.yaml`.
#
#   bash scripts/build-images.sh            # wheelhouses, then both images (wma-*:dev)
#
# or by hand, after `bash scripts/wheelhouse.sh gateway`:
#
#   docker build -f docker/gateway.Dockerfile -t wma-gateway:dev .
#
# Serving dependencies only (the base of pyproject.toml: no PyTorch, OpenCV,
# scikit-learn, pandas, pyarrow or matplotlib): the gateway only fans out,
# calibrates and fuses. The Helm test pod also runs in this image (python +
# httpx + Pillow). Packages come from
# build/wheelhouse/gateway/ (requirements/gateway.lock, hashes checked again
# here), so the build needs no network. PYTHON_IMAGE: see model-server.Dockerfile.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
COPY build/wheelhouse/gateway /wheels
COPY requirements/gateway.lock requirements/build.lock /src/requirements/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes -r /src/requirements/build.lock \
 && /opt/venv/bin/pip install --require-hashes -r /src/requirements/gateway.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY calibrators/wma_calibrators ./calibrators/wma_calibrators
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="wma-gateway" \
      org.opencontainers.image.description="wma-ensemble fusion gateway" \
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
    WMA_HEALTH_PORT=8080
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('WMA_HEALTH_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["wma"]
CMD ["gateway", "--config", "/etc/wma/gateway.yaml", "--host", "0.0.0.0", "--port", "8080"]
