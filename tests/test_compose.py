"""docker-compose.yml and the Dockerfile, checked by reading them (no Docker engine is needed).

The deployment story in ARCHITECTURE.md: PostgreSQL with a healthcheck, Redis, a one-shot
migration, web, worker, beat and a timed backup from one image, mailpit; the database and Redis on
an internal network; secrets from the environment, never from the files. Least privilege (issue 14):
only the migration holds the owner's password; everything that runs connects as the login role the
migration grants (tests/ops/test_app_login_role.py proves that role cannot switch a trigger off).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("migrate", "web", "worker", "beat", "backup")
#: the services that run as the app's login role, never as the owner
RUNTIME = ("web", "worker", "beat", "backup")
APP_ENV = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SECRET_KEY", "CLINIC_INSTANCE_PATH")
DB_URL = re.compile(r"^postgresql://(?P<user>[^:@/]+):(?P<password>\$\{[^}]+\})@postgres:5432/(?P<db>\w+)$")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$", re.IGNORECASE)
# ${VAR} or ${VAR:?message} / ${VAR?message}: taken from the environment, with no default to fall back on.
REQUIRED_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = []
    for line in lines:
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            pairs.append((instruction.upper(), args.strip()))
    return pairs


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def healthcheck(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "healthcheck disabled"
    test = check.get("test")
    assert test, "no healthcheck"
    return " ".join(argv(test))


def conditions(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on must name conditions, not just services"
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def published(service: dict[str, Any]) -> list[Any]:
    return list(service.get("ports", []))


# --- services ----------------------------------------------------------------------------------


def test_the_services(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat", "backup", "mailpit"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["mailpit"]["image"].startswith("axllent/mailpit")


def test_app_services_share_one_image(services: dict[str, Any]) -> None:
    images = {services[name].get("image") for name in APP_SERVICES}
    builds = {str(services[name].get("build")) for name in APP_SERVICES}
    assert len(images) == 1 and None not in images
    assert builds == {"."}


def test_healthchecks(services: dict[str, Any]) -> None:
    assert "pg_isready" in healthcheck(services["postgres"])
    redis = healthcheck(services["redis"])
    assert "redis-cli" in redis and "ping" in redis
    assert "/health/ready" in healthcheck(services["web"]), "traffic waits for readiness, not mere liveness"
    for name in ("worker", "beat"):
        assert healthcheck(services[name]).split()[-2:] == ["clinic", "health"], name
    assert "/backups" in healthcheck(services["backup"]) and "manifest.json" in healthcheck(services["backup"])
    assert healthcheck(services["mailpit"])


def test_start_order(services: dict[str, Any]) -> None:
    assert conditions(services["migrate"]) == {"postgres": "service_healthy"}
    web = conditions(services["web"])
    assert web["migrate"] == "service_completed_successfully"
    assert web["redis"] == "service_healthy"
    for name in ("worker", "beat"):
        deps = conditions(services[name])
        assert deps["migrate"] == "service_completed_successfully", name
        assert deps["redis"] == "service_healthy", name
    assert conditions(services["backup"])["migrate"] == "service_completed_successfully"
    for name, service in services.items():
        for dep, condition in conditions(service).items():
            assert condition != "service_started", f"{name} waits only for {dep} to start"


def migrate_steps(services: dict[str, Any]) -> list[list[str]]:
    """The migration's commands, in order: ``sh -ec "A && B"`` or a plain argv."""
    command = argv(services["migrate"]["command"])
    if command[:2] == ["sh", "-ec"]:
        return [shlex.split(step) for step in command[2].split("&&")]
    return [command]


def test_commands(services: dict[str, Any]) -> None:
    steps = migrate_steps(services)
    assert steps[0] == ["clinic", "db", "upgrade"], "migrate first, then grant (new tables need their grants)"
    assert [step[:3] for step in steps[1:]] == [["clinic", "db", "grant-app-role"]]
    assert services["migrate"].get("restart", "no") == "no", "the migration runs once"
    web = argv(services["web"]["command"])
    assert web[0] == "gunicorn" and web[-1] == "clinic.wsgi:app"
    assert argv(services["worker"]["command"])[:4] == ["celery", "-A", "worker", "worker"]
    beat = argv(services["beat"]["command"])
    assert beat[:4] == ["celery", "-A", "worker", "beat"]
    # beat writes its schedule file; the working directory is not the place (read-only for the app user).
    schedule = beat[beat.index("--schedule") + 1]
    assert schedule.startswith(environment(services["beat"])["CLINIC_INSTANCE_PATH"] + "/")


def test_only_web_and_mailpit_are_published(services: dict[str, Any]) -> None:
    assert not published(services["postgres"])
    assert not published(services["redis"])
    assert [str(port).rsplit(":", 1)[-1] for port in published(services["web"])] == ["8000"]
    for name in ("migrate", "worker", "beat"):
        assert not published(services[name]), name
    for port in published(services["mailpit"]):
        assert str(port).startswith("127.0.0.1:"), "mailpit's UI is for this machine only"


def test_database_and_redis_are_on_an_internal_network_only(compose: dict[str, Any], services: dict[str, Any]) -> None:
    networks = compose["networks"]
    for name in ("postgres", "redis"):
        joined = services[name].get("networks")
        assert joined, f"{name} is on the default (non-internal) network"
        for network in joined:
            assert (networks.get(network) or {}).get("internal") is True, f"{name} joins {network}"
    for name in APP_SERVICES:
        assert any((networks.get(n) or {}).get("internal") for n in services[name]["networks"]), name


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> volume (or host path)."""
    return {str(v).split(":")[1]: str(v).split(":")[0] for v in service.get("volumes", [])}


def test_app_environment(compose: dict[str, Any], services: dict[str, Any]) -> None:
    for name in ("web", "worker", "beat"):
        env = environment(services[name])
        assert set(APP_ENV) <= set(env), f"{name} lacks {set(APP_ENV) - set(env)}"
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert env["REDIS_URL"].startswith("redis://redis:")
    for name in RUNTIME:
        env = environment(services[name])
        assert DB_URL.match(env["DATABASE_URL"]), f"{name}: {env['DATABASE_URL']}"
        # The instance folder (keys, exports) is a named volume shared by every service that runs.
        source = mounts(services[name]).get(env["CLINIC_INSTANCE_PATH"])
        assert source in compose["volumes"], f"{name}: CLINIC_INSTANCE_PATH is not on a named volume"
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_only_the_migration_holds_the_owners_password(services: dict[str, Any]) -> None:
    """Issue 14: web, worker, beat and backup connect as the login role the migration grants; the
    owner's password (the one PostgreSQL's entrypoint gives POSTGRES_USER) is in no environment but
    PostgreSQL's own and the migration's."""
    pg = environment(services["postgres"])
    owner, owner_secret = pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"]
    owner_var = re.match(r"\$\{(\w+)", owner_secret)
    assert owner_var, "the owner's password comes from the environment"
    migrate = DB_URL.match(environment(services["migrate"])["DATABASE_URL"])
    assert migrate and migrate["user"] == owner and migrate["password"].startswith("${" + owner_var[1])
    granted = migrate_steps(services)[1][3]
    password_env = migrate_steps(services)[1][migrate_steps(services)[1].index("--login-password-env") + 1]
    assert environment(services["migrate"])[password_env].startswith("${"), "the role's password from the environment"
    for name in RUNTIME:
        env = environment(services[name])
        url = DB_URL.match(env["DATABASE_URL"])
        assert url and url["user"] == granted != owner, f"{name} must connect as {granted}"
        assert url["password"] == environment(services["migrate"])[password_env], name
        assert url["db"] == migrate["db"] == pg["POSTGRES_DB"], name
        for key, value in env.items():
            assert owner_var[1] not in value and key != owner_var[1], f"{name}: {key} carries the owner's password"
        assert "POSTGRES_PASSWORD" not in str(services[name]), name


def test_backup_runs_on_a_timer_into_its_own_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    service = services["backup"]
    command = argv(service["command"])
    assert command[:2] == ["sh", "-c"]
    script = command[2].replace("$$", "$")  # compose's escape for a literal $
    assert "while :" in script and re.search(r"\bsleep\b", script)
    assert re.search(r'clinic backup -o "?/backups/', script)
    assert mounts(service)["/backups"] in compose["volumes"]
    assert not str(mounts(service)["/backups"]).startswith(("/", ".")), "a named volume, not a host folder"
    assert "/backups" not in mounts(services["web"]), "web has no business with the backups"
    assert mounts(services["migrate"])["/backups"] == mounts(service)["/backups"], "restores run in migrate"
    assert any(str(v) == "backups:/backups:ro" for v in services["migrate"]["volumes"]), "migrate only reads them"
    env = environment(service)
    assert int(re.search(r":-(\d+)", env["CLINIC_BACKUP_EVERY_SECONDS"])[1]) <= 86400, "at least daily"
    for shell in (script, healthcheck(service).removeprefix("CMD-SHELL ").replace("$$", "$")):
        checked = subprocess.run(["sh", "-n", "-c", shell], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr


def test_no_secret_is_written_in_the_file(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_VAR.fullmatch(value), f"{name}: {key} must come from the environment, got {value!r}"
            for userinfo in re.findall(r"://([^/@\s]*)@", value):
                password = userinfo.partition(":")[2]
                assert not password or REQUIRED_VAR.fullmatch(password), f"{name}: {key} carries a password"
    env = environment(services["web"])
    assert REQUIRED_VAR.fullmatch(env["SECRET_KEY"])


# --- the image ---------------------------------------------------------------------------------


def test_dockerfile_base_and_install(dockerfile: list[tuple[str, str]]) -> None:
    froms = [args for instruction, args in dockerfile if instruction == "FROM"]
    assert froms and froms[-1].split()[0] == "python:3.11-slim"
    runs = " ".join(args for instruction, args in dockerfile if instruction == "RUN")
    assert "pip install -c constraints.txt ." in runs
    assert re.search(r"apt-get install .*libpango-1\.0-0", runs)
    assert "libpangoft2-1.0-0" in runs


def test_the_image_has_pg_dump_of_the_servers_version(dockerfile: list[tuple[str, str]], services: dict) -> None:
    """pg_dump refuses a server newer than itself: the image's client is the compose server's major."""
    server = re.match(r"postgres:(\d+)", services["postgres"]["image"])
    args = dict(a.split("=", 1) for instruction, a in dockerfile if instruction == "ARG" and "=" in a)
    assert server and args.get("PG_MAJOR") == server[1]
    runs = " ".join(args for instruction, args in dockerfile if instruction == "RUN")
    assert '"postgresql-client-${PG_MAJOR}"' in runs


def test_dockerfile_runs_as_a_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [args for instruction, args in dockerfile if instruction == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Nothing after the last USER switches back.
    last = max(i for i, (instruction, _) in enumerate(dockerfile) if instruction == "USER")
    assert all(instruction != "USER" for instruction, _ in dockerfile[last + 1 :])


def test_dockerfile_ships_the_migrations_where_the_cli_looks(dockerfile: list[tuple[str, str]]) -> None:
    import clinic
    from clinic.cli import MIGRATIONS

    # The image puts migrations/ beside the installed package; that only works while the CLI looks there.
    assert Path(clinic.__file__).resolve().parent.parent / "migrations" == MIGRATIONS
    copies = [args.split() for instruction, args in dockerfile if instruction == "COPY"]
    assert any(parts[0].rstrip("/") == "migrations" for parts in copies if not parts[0].startswith("--"))
    runs = " ".join(args for instruction, args in dockerfile if instruction == "RUN")
    assert "purelib" in runs and "migrations" in runs
    assert "from clinic.cli import MIGRATIONS" in runs, "the build should prove the CLI finds them"


def test_dockerfile_holds_no_secret(dockerfile: list[tuple[str, str]]) -> None:
    for instruction, args in dockerfile:
        if instruction in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", args):
                assert not SECRET_NAME.search(name), f"{instruction} {name}: pass secrets at run time"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and "instance/" in ignored, "keys and secrets stay out of the build context"


def test_reminder_mail_goes_to_mailpit_and_the_broker_keeps_its_keys(services: dict[str, Any]) -> None:
    """Issue 12: in staging the worker's e-mail reminders land in mailpit (SMTP 1025 on the backend
    network); Redis never evicts queued tasks."""
    for name in ("worker", "beat", "web"):
        env = environment(services[name])
        assert env["CLINIC_MAIL_HOST"].endswith("mailpit}") or env["CLINIC_MAIL_HOST"] == "mailpit", name
        assert "1025" in env["CLINIC_MAIL_PORT"], name
    assert "backend" in services["mailpit"]["networks"]
    assert "noeviction" in argv(services["redis"]["command"])
