# kubebots: one image for the runtime (`kubebots serve`, the default) and the operator
# (`kubebots operator ...`, see deploy/operator/deployment.yaml).
#
#   docker build -t ghcr.io/kubebots/kubebots:0.1.0 .      # or: make image
#   docker run --rm -p 8000:8000 -e KUBEBOTS_HOST=0.0.0.0 ghcr.io/kubebots/kubebots:0.1.0
#
# PYTHON_IMAGE names the base of both stages (default python:3.11-slim); the e2e tests build on
# a stand-in made from Debian packages (tests/e2e/harness/images.py), nothing else changes.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the package and its dependencies into a virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kubebots
WORKDIR /src
# Only what `pip install .` reads (pyproject.toml names README.md as the readme).
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY operator ./operator
RUN /opt/kubebots/bin/pip install --upgrade pip \
    && /opt/kubebots/bin/pip install . \
    && /opt/kubebots/bin/kubebots --version

# --- final: the virtualenv on a clean base, as a non-root user -------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/kubebots/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KUBEBOTS_DATA_DIR=/var/lib/kubebots
RUN groupadd --system --gid 10001 kubebots \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/kubebots \
       --shell /usr/sbin/nologin kubebots \
    && mkdir -p /var/lib/kubebots \
    && chown 10001:10001 /var/lib/kubebots
COPY --from=build /opt/kubebots /opt/kubebots
WORKDIR /var/lib/kubebots
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["kubebots"]
CMD ["serve"]
