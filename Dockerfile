# clinic-ops: one image for the web server, the Celery worker and beat, and the one-shot migration.
# Build: docker build -t clinic-ops .   Run it with docker-compose.yml (PostgreSQL, Redis, mailpit).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CLINIC_INSTANCE_PATH=/var/lib/clinic

# Pango (with its fontconfig and FreeType), HarfBuzz's subsetter and DejaVu render the PDFs (WeasyPrint).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

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

# The instance folder (generated keys, exports, beat's schedule) is a volume in docker-compose.yml;
# it is created here so that a fresh named volume starts out owned by the app user.
RUN mkdir -p /app /var/lib/clinic && chown clinic:clinic /app /var/lib/clinic
WORKDIR /app
USER clinic:clinic

EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", "clinic.wsgi:app"]
