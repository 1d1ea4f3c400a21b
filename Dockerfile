# Multi-stage: build wheels with the compilers (setup.py compiles the C fan-out,
# jasmin_sfu/media/_fastpath.c), run them slim and non-root.
#
# The base image is one build argument for both stages. Pin it by digest where the registry
# is reachable, and keep the pin when you bump it:
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # prints the index digest
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> -t jasmin-sfu .
# (then write that value as the default below).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, from setup.cfg's install_requires alone: this layer is rebuilt only when
# setup.cfg changes, not on every change to the code.
COPY setup.cfg ./
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); \
print(c['options']['install_requires'])" > requirements.txt \
    && pip wheel --no-cache-dir --wheel-dir /wheels/deps -r requirements.txt
# Then the code (.dockerignore keeps out .venv, tests and any host-built _fastpath*.so, which
# setuptools would otherwise ship instead of compiling here).
COPY pyproject.toml setup.py README.md ./
COPY codecs codecs
COPY signaling signaling
COPY metering metering
COPY jasmin_sfu jasmin_sfu
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/app .

FROM ${PYTHON_IMAGE}
RUN useradd --system --create-home --uid 10001 jasmin && install -d -o jasmin -g jasmin /data
COPY --from=build /wheels/deps /wheels/deps
RUN pip install --no-cache-dir --no-index /wheels/deps/*.whl && rm -rf /wheels/deps
COPY --from=build /wheels/app /wheels/app
RUN pip install --no-cache-dir --no-index --no-deps /wheels/app/*.whl && rm -rf /wheels/app
# The C fan-out is optional to setuptools (the daemon falls back to the slower Python path);
# an image without it is a build failure, not a silent slowdown.
RUN python -c "import sys; from jasmin_sfu.media import fastpath; sys.exit(fastpath.unavailable_reason)"
USER jasmin
WORKDIR /home/jasmin
# HTTP (demo page, /ws signaling, /metrics) and the ICE/RTP UDP range. The SQLite stores (ledger,
# billing outbox, accounts, chat, social) live in /data, a volume: they survive the container.
# The demo accounts have public passwords, so an image never seeds them
# (-e JASMIN_ACCOUNTS_SEED_DEMO=true to try the demo locally).
ENV JASMIN_SERVER_HOST=0.0.0.0 \
    JASMIN_SERVER_PORT=8080 \
    JASMIN_MEDIA_RTC_MIN_PORT=40000 \
    JASMIN_MEDIA_RTC_MAX_PORT=40099 \
    JASMIN_BILLING_DATA_DIR=/data \
    JASMIN_ACCOUNTS_DATA_DIR=/data \
    JASMIN_ACCOUNTS_SEED_DEMO=false
VOLUME /data
EXPOSE 8080/tcp
EXPOSE 40000-40099/udp
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["jasmin-sfu", "serve"]
