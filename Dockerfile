# One image for every bizsupport process; docker-compose.yml picks the process with `command:`.
#   migrations: python -m store.migrate
#   worker:     python worker.py                  (the default below)
#   API:        uvicorn api.app:create_app --factory --host 0.0.0.0 --port 8000
#
# The base image is pinned by digest (the multi-arch index of python:3.11-slim, Debian trixie, as
# published in August 2026), so a rebuild starts from the same files; move it on deliberately:
#   docker buildx imagetools inspect python:3.11-slim   (the "Digest:" line)
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/var/lib/bizsupport

WORKDIR /app

# Exact versions and sha256 hashes from requirements.lock (`make lock`), the build backend
# included, so nothing unpinned is downloaded; this layer is cached until the lock changes.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY . .
RUN pip install --no-deps --no-build-isolation . \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/bizsupport bizsupport \
    && mkdir -p "$DATA_DIR" \
    && chown bizsupport:bizsupport "$DATA_DIR"

USER bizsupport

CMD ["python", "worker.py"]
