# kubebots: one image for the runtime (`kubebots serve`, the default) and the operator
# (`kubebots operator ...`, see deploy/operator/deployment.yaml).
#
#   docker build -t ghcr.io/kubebots/kubebots:0.1.0 .      # or: make image
#   docker run --rm -p 8000:8000 -e KUBEBOTS_HOST=0.0.0.0 ghcr.io/kubebots/kubebots:0.1.0
#
# PYTHON_IMAGE names the base of every stage (default python:3.11-slim); the e2e tests build on
# a stand-in made from Debian packages (tests/e2e/harness/images.py), nothing else changes.
#
# Layers: the dependencies are installed from pyproject.toml alone (stage `deps`), the package
# itself afterwards (stage `build`), so an edit of runtime/ or operator/ rebuilds in seconds and
# the final image is the base + the dependencies + a small layer with kubebots.
ARG PYTHON_IMAGE=python:3.11-slim

# --- requirements: what to install, read from pyproject.toml ----------------------------------
# pip cannot install only a project's dependencies, so they are read from pyproject.toml with
# the standard library (tomllib) into requirements files: [project].dependencies (environment
# markers included) and [build-system].requires. The next stage copies just these two files,
# so its install layer is rebuilt when a dependency changes, not when another part of
# pyproject.toml (tool settings, entry points) does.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
open("requirements.txt", "w").write("\n".join(p["project"]["dependencies"]) + "\n"); \
open("build-requirements.txt", "w").write("\n".join(p["build-system"]["requires"]) + "\n")'

# --- deps: the dependencies in the virtualenv the image ships ---------------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# binutils for `strip` (below); build stages only, the final image has no build tools.
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
# Two virtualenvs: /opt/build holds pip and the build backend; /opt/kubebots, the one shipped,
# is made without pip (nothing at run time needs it) and pip installs into it from outside
# (`pip --python`), so no installer, setuptools or wheel ever lands in it.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --upgrade pip \
    && python -m venv --without-pip /opt/kubebots
WORKDIR /src
COPY --from=requirements /src/requirements.txt /src/build-requirements.txt ./
# The backend goes into /opt/build (the package is built later without fetching it again), the
# dependencies into /opt/kubebots. pip compiles every installed module to .pyc here: the root
# filesystem is read-only in pods, so nothing could be compiled and cached at run time.
RUN /opt/build/bin/pip install -r build-requirements.txt \
    && /opt/build/bin/pip --python /opt/kubebots/bin/python install -r requirements.txt
# What the dependencies ship but nothing runs (the image stays honest: no tests, no sources):
# - kubernetes/aio: the asyncio flavour of the client (~67 MB of the ~130 MB the distribution
#   installs), only imported as `kubernetes.aio`; kubebots uses the synchronous
#   `kubernetes.client` and kopf talks to the API through aiohttp. `import kubernetes` does not
#   load it (tests/e2e/test_image.py checks that kubebots never imports it).
# - test suites: `tests/`, `_tests/`, `test_*.py` and `*_test.py` (kubernetes keeps its unit
#   tests beside the code), with their .pyc.
# - Cython/C sources of compiled extensions (*.pyx, *.pxd, *.pxi, *.c, *.h; uvloop's
#   mostly) and typing stubs (*.pyi, *-stubs/): read by compilers and type checkers only.
# - DWARF debug info of compiled extensions: `strip --strip-debug` on those carrying
#   .debug_info (the Cython ones, uvloop's 13 MB loop module is 2 MB without); symbols stay, and
#   libraries vendored by auditwheel (*.libs/, patched with patchelf) are left alone.
# Then every stripped extension module is imported (a damaged one fails here instead of being
# skipped for a pure-Python fallback at run time), and `pip check` confirms that the installed
# distributions still satisfy each other's requirements.
RUN cd /opt/kubebots/lib/python3*/site-packages \
    && rm -rf kubernetes/aio \
    && find . -depth -type d \( -name tests -o -name _tests -o -name '*-stubs' \) \
       -exec rm -rf {} + \
    && find . -type f \( -name 'test_*.py' -o -name '*_test.py' \
       -o -name 'test_*.cpython-*.pyc' -o -name '*_test.cpython-*.pyc' \
       -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' -o -name '*.h' \
       -o -name '*.pyi' \) -delete \
    && : > /tmp/stripped \
    && for so in $(find . -name '*.so' -not -path './*.libs/*'); do \
         if readelf -S "$so" | grep -q '\.debug_info'; then \
           strip --strip-debug "$so" && echo "$so" >> /tmp/stripped; \
         fi; \
       done \
    && /opt/kubebots/bin/python -c 'import importlib, pathlib; \
[importlib.import_module(".".join(p.with_name(p.name.split(".")[0]).parts)) \
 for p in map(pathlib.Path, open("/tmp/stripped").read().split())]' \
    && /opt/build/bin/pip --python /opt/kubebots/bin/python check

# --- build: the kubebots package, on top of its dependencies ---------------------------------
FROM deps AS build
# What building the package reads (pyproject.toml names README.md as the readme).
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY operator ./operator
# The wheel is installed without its dependencies (they are there) under /pkg, which mirrors
# the root: the final stage copies /pkg as its own small layer. Its .pyc are compiled with the
# paths they run from (-s/-p), then it is merged here for `pip check` and a first run.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheel . \
    && /opt/build/bin/pip --python /opt/kubebots/bin/python install --no-deps --no-compile \
       --no-warn-script-location --root /pkg /tmp/wheel/kubebots-*.whl \
    && /opt/kubebots/bin/python -m compileall -q -s /pkg -p / /pkg/opt/kubebots \
    && cp -a /pkg/. / \
    && /opt/build/bin/pip --python /opt/kubebots/bin/python check \
    && /opt/kubebots/bin/kubebots --version

# --- final: the virtualenv on a clean base, as a non-root user -------------------------------
FROM ${PYTHON_IMAGE}
# python:3.11-slim deletes the standard library's .pyc, and the root filesystem is read-only in
# pods: every start would compile the ~250 stdlib modules `kubebots serve` imports again (~0.7 s
# of CPU, measured on a stand-in without them). Compile the stdlib once here (~12 MB), all but
# tests, GUI and packaging tools and the base's own site-packages; on a base that has them
# (Debian's python3) nothing is written.
RUN python -m compileall -q -j 0 \
    -x '/(site-packages|test|tests|idlelib|tkinter|turtledemo|lib2to3|ensurepip)/' \
    "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
ENV PATH=/opt/kubebots/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KUBEBOTS_DATA_DIR=/var/lib/kubebots
RUN groupadd --system --gid 10001 kubebots \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/kubebots \
       --shell /usr/sbin/nologin kubebots \
    && mkdir -p /var/lib/kubebots \
    && chown 10001:10001 /var/lib/kubebots
COPY --from=deps /opt/kubebots /opt/kubebots
COPY --from=build /pkg/ /
WORKDIR /var/lib/kubebots
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["kubebots"]
CMD ["serve"]
