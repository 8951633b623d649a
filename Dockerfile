# The liaison_net image: the `liaison` command, installed from this repository.
# docker-compose.yml runs it as `init` (the PKI) and as one node per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The package first, so that editing a node config does not reinstall it.
COPY pyproject.toml README.md ./
COPY liaison_net ./liaison_net
RUN pip install .

COPY node_configs ./node_configs

# An unprivileged user; the volumes mounted at these paths take their owner from the image
# on first use, so the node can write its database and `init` its certificates.
RUN useradd --system --uid 10001 --home-dir /app --no-create-home liaison \
    && mkdir -p ca certs data/be data/nl data/lu data/de-nw \
    && chown liaison:liaison ca certs data/be data/nl data/lu data/de-nw
USER liaison

# Federation (mutual TLS, between nodes) and officer API ports of be, nl, lu, de-nw.
EXPOSE 7401 7402 7403 7404 7501 7502 7503 7504

CMD ["liaison", "--help"]
