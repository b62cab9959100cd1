# One image for every service; the command picks the service (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY shared ./shared
COPY services ./services
COPY migrations ./migrations
COPY kpi ./kpi
RUN pip install . && useradd --system --uid 10001 kpi
USER kpi
ENV KPI_BIND_HOST=0.0.0.0
CMD ["python", "-m", "services.scoring"]
