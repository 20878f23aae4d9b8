# One image for the six Python services; docker-compose.yml picks the module per service.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY producer ./producer
COPY consumer_db ./consumer_db
COPY consumer_alerts ./consumer_alerts
COPY dashboard ./dashboard
COPY notifier ./notifier
COPY api ./api
# /state is where consumer_alerts keeps its snapshot; a named volume mounted there inherits this owner.
RUN pip install . && useradd --create-home --uid 10001 axiswatch && mkdir /state && chown axiswatch /state
USER axiswatch
EXPOSE 5006
CMD ["python", "-m", "dashboard", "--help"]
