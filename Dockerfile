# tickcast — a live streaming prediction service for crypto futures.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TICKCAST_STATE_DIR=/var/lib/tickcast

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY model ./model
COPY service ./service
RUN pip install . \
    && useradd --system --home /var/lib/tickcast --create-home tickcast

USER tickcast
EXPOSE 9464
ENTRYPOINT ["tickcast"]
CMD ["--help"]
