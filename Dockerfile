# One image for every process of the service (web, worker, settlement, beat, flower, release and
# the dev sandbox); docker-compose.yml picks the command. Runs as an unprivileged user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PAYMENTS_VAR_DIR=/app/var \
    DJANGO_STATIC_ROOT=/app/static

WORKDIR /app

# The dependencies in a layer of their own, so that a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md manage.py Procfile ./
COPY project ./project
COPY payments ./payments
COPY workers ./workers
COPY sandbox ./sandbox
RUN pip install --no-deps . \
    && useradd --system --user-group --uid 10001 --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app \
    && mkdir -p /app/var /app/static \
    && DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && chown -R app:app /app/var /app/static

USER app

EXPOSE 8000 5555 8765

CMD ["gunicorn", "project.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", \
     "--timeout", "30", "--graceful-timeout", "20", "--access-logfile", "-"]
