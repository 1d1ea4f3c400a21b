# Multi-stage: build a wheel with the compilers (setup.py compiles the C fan-out,
# jasmin_sfu/media/_fastpath.c), run it slim and non-root.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.cfg setup.py README.md ./
COPY codecs codecs
COPY signaling signaling
COPY metering metering
COPY jasmin_sfu jasmin_sfu
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN useradd --system --create-home --uid 10001 jasmin
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER jasmin
WORKDIR /home/jasmin
# HTTP (demo page, /ws signaling, /metrics) and the ICE/RTP UDP range.
ENV JASMIN_SERVER_HOST=0.0.0.0 \
    JASMIN_SERVER_PORT=8080 \
    JASMIN_MEDIA_RTC_MIN_PORT=40000 \
    JASMIN_MEDIA_RTC_MAX_PORT=40099
EXPOSE 8080/tcp
EXPOSE 40000-40099/udp
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["jasmin-sfu", "serve"]
