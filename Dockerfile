# A streamsaga worker image. Point it at a Kafka cluster with STREAMSAGA_BROKER; docker-compose.yml runs
# one with three brokers and two workers. Checked without a container engine by tests/unit/test_deploy_files.py.

# Build stage: wheels of the app and of its runtime dependencies only (no dev or bench extras).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY models ./models
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Final stage: the installed wheels, a non-root user and a volume for the tables; no pip cache, no sources.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    STREAMSAGA_DATA_DIR=/var/lib/streamsaga STREAMSAGA_WEB_BIND=0.0.0.0 STREAMSAGA_WEB_PORT=6066
RUN useradd --system --uid 10001 --home-dir /var/lib/streamsaga streamsaga \
    && mkdir -p /var/lib/streamsaga && chown streamsaga /var/lib/streamsaga
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index /tmp/wheels/*.whl && rm -rf /tmp/wheels
USER streamsaga
WORKDIR /var/lib/streamsaga
VOLUME /var/lib/streamsaga
EXPOSE 6066
# Ready once its tables are recovered and its partitions assigned (GET /readyz answers 503 before).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['STREAMSAGA_WEB_PORT'], timeout=2)"]
CMD ["streamsaga", "worker", "-l", "info"]
