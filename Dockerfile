# A streamsaga worker. Point it at an existing Kafka cluster with STREAMSAGA_BROKER.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    STREAMSAGA_DATA_DIR=/var/lib/streamsaga STREAMSAGA_WEB_BIND=0.0.0.0
WORKDIR /srv/streamsaga

COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY models ./models
COPY config ./config
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/streamsaga streamsaga \
    && mkdir -p /var/lib/streamsaga && chown streamsaga /var/lib/streamsaga

USER streamsaga
VOLUME /var/lib/streamsaga
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('STREAMSAGA_WEB_PORT', '6066'))"
CMD ["streamsaga", "worker", "-l", "info"]
