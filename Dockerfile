# One image for every bizsupport process; docker-compose.yml picks the process with `command:`.
#   migrations: python -m store.migrate
#   worker:     python worker.py                  (the default below)
#   API:        uvicorn api.app:create_app --factory --host 0.0.0.0 --port 8000
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/var/lib/bizsupport

WORKDIR /app

COPY . .
RUN pip install . \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/bizsupport bizsupport \
    && mkdir -p "$DATA_DIR" \
    && chown bizsupport:bizsupport "$DATA_DIR"

USER bizsupport

CMD ["python", "worker.py"]
