# One image for every process of the service: `nas migrate`, `nas serve`, `nas worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NAS_ARTIFACTS_DIR=/var/lib/nas/artifacts \
    NAS_CACHE_DIR=/var/lib/nas/cache \
    NAS_DATA_ROOTS=/data

# The unprivileged user every process runs as. The state folders are created here, owned
# by it, so that named volumes mounted on them start out writable by it.
RUN useradd --create-home --uid 1000 --user-group nas \
    && mkdir -p /var/lib/nas/artifacts /var/lib/nas/cache /data \
    && chown -R nas:nas /var/lib/nas

# The dependencies first, read from pyproject.toml alone, so that editing the code does
# not reinstall TensorFlow.
COPY pyproject.toml /tmp/src/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['tensorflow']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself: a regular (not editable) install into site-packages.
COPY . /tmp/src
RUN cd /tmp/src \
    && pip install --no-cache-dir '.[tensorflow]' \
    && cd / \
    && rm -rf /tmp/src

USER nas
WORKDIR /var/lib/nas
EXPOSE 8000

CMD ["nas", "serve", "--host", "0.0.0.0"]
