# clinic-ops: one image for the web server, the Celery worker and beat, and the one-shot migration.
# Build: docker build -t clinic-ops .   Run it with docker-compose.yml (PostgreSQL, Redis, mailpit).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CLINIC_INSTANCE_PATH=/var/lib/clinic

# The PostgreSQL major version of docker-compose.yml's server: `clinic backup` runs its pg_dump and
# `clinic restore` its pg_restore, which must be that version or newer (the PGDG apt repository has them).
ARG PG_MAJOR=16

# Pango (with its fontconfig and FreeType), HarfBuzz's subsetter and DejaVu render the PDFs (WeasyPrint).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
        ca-certificates curl \
    && install -d /usr/share/postgresql-common/pgdg \
    && curl -fsSLo /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && . /etc/os-release \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
    && apt-get purge -y curl && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && pg_dump --version | grep -q " ${PG_MAJOR}\."

RUN groupadd --system --gid 10001 clinic \
    && useradd --system --uid 10001 --gid clinic --home-dir /app --no-create-home --shell /usr/sbin/nologin clinic

WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY clinic/ clinic/
COPY worker/ worker/
COPY migrations/ migrations/

# clinic/cli.py finds the migrations beside the clinic package (Path(cli.py).parent.parent /
# "migrations"), as in the repository. Installed, the package lives in site-packages, so the
# migrations go there too; the build fails here if the two ever disagree. The build tree is then
# removed so that no second copy of the code can shadow the installed one.
RUN pip install -c constraints.txt . \
    && cp -r migrations "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/migrations" \
    && cd / && rm -rf /src \
    && python -c "from clinic.cli import MIGRATIONS; assert (MIGRATIONS / 'env.py').is_file(), MIGRATIONS"

# The instance folder (generated keys, exports, beat's schedule) and /backups are volumes in
# docker-compose.yml; they are created here so that a fresh named volume starts out owned by the app user.
RUN mkdir -p /app /var/lib/clinic /backups && chown clinic:clinic /app /var/lib/clinic /backups \
    && chmod 0700 /backups
WORKDIR /app
USER clinic:clinic

EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "3", "-c", "python:clinic.gunicorn_conf", "clinic.wsgi:app"]
