# The taskdrive image: API, worker and one-off commands (migrate, token, search attributes).
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY taskdrive ./taskdrive
COPY api ./api
COPY workflows ./workflows
COPY activities ./activities
COPY worker.py ./
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

RUN useradd --create-home taskdrive && mkdir -p /data && chown taskdrive /data
USER taskdrive
ENTRYPOINT ["taskdrive"]
