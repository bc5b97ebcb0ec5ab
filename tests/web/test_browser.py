"""The real system in a real browser: ``clinic run`` on SQLite, driven through Debian's Chromium.

The module migrates a fresh instance with ``clinic db upgrade``, creates its staff with
``clinic users create --password-stdin`` and serves it with ``clinic run`` on a free loopback
port, exactly as ``scripts/run-all`` does (minus the worker and beat).

Cookies: the server keeps the production default (``SECURE_COOKIES`` true, so the session cookie
is ``__Host-session; Secure``). Chromium treats http://localhost and http://127.0.0.1 as
potentially trustworthy origins and keeps Secure and ``__Host-`` cookies there, so the tests
browse http://localhost with production cookie settings; ``test_host_cookie_is_kept_on_loopback``
pins that down for both names. Any other plain-http host (a LAN address, another hostname) drops
the cookie and every form then fails its CSRF check.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.clock import clock_env
from tests.conftest import IN_CI, Account

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BIN = Path(sys.executable).parent
BIND = "127.0.0.1"
START_TIMEOUT = 30.0


@dataclass
class Staff(Account):
    name: str


@dataclass
class LiveServer:
    port: int
    instance: Path
    log: Path
    nurse: Staff
    admin: Staff

    @property
    def database(self) -> Path:
        return self.instance / "clinic.sqlite"

    def url(self, path: str = "/", host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{path}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((BIND, 0))
        return int(sock.getsockname()[1])


def _server_env(instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINIC_", "FLASK_"))}
    for var in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SECRET_KEY"):
        env.pop(var, None)
    env["CLINIC_INSTANCE_PATH"] = str(instance)
    env["DATABASE_URL"] = f"sqlite:///{instance / 'clinic.sqlite'}"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(clock_env())  # the server's clock is the tests' (sessions, TOTP codes)
    # No beat runs beside these servers: the dashboard's banner may warn a second after start.
    env["CLINIC_HEARTBEAT_STALE_SECONDS"] = "1"
    return env


def _clinic(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(BIN / "clinic"), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"clinic {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _create_staff(env: dict[str, str], role: str, name: str, *licence: str) -> Staff:
    email = f"{role}.{uuid.uuid4().hex[:8]}@browser.test"
    password = f"pw-{uuid.uuid4().int}"
    out = _clinic(
        env, "users", "create", "--email", email, "--name", name, "--role", role, *licence, "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    match = re.search(r"created user (\d+) \((\w+)\)", out)
    assert match, out
    assert match.group(2) == role
    return Staff(id=int(match.group(1)), email=email, password=password, role=role, totp_secret=None, name=name)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"clinic run exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (a fixed http URL)
                body = json.loads(resp.read())
                if resp.status == 200 and body.get("status") == "ok":
                    return
                last = f"{resp.status} {body}"
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read()[:200]!r}"
            exc.close()
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer ok within {START_TIMEOUT:.0f}s (last: {last}):\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module", autouse=True)
def _chromium_present() -> None:
    """A missing browser skips locally; in CI the browser tests must run, so it is a failure."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing (apt-get install chromium); the browser tests need it"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    instance = tmp_path_factory.mktemp("browser-instance")
    env = _server_env(instance)
    _clinic(env, "db", "upgrade")
    nurse = _create_staff(env, "nurse", "Nora Quill", "--license-number", "RN-4471", "--license-type", "RN")
    admin = _create_staff(env, "admin", "Ada Bramble")
    port = _free_port()
    log_path = instance / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "clinic"), "run", "--host", BIND, "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(proc, f"http://{BIND}:{port}/health", log_path)
        yield LiveServer(port=port, instance=instance, log=log_path, nurse=nurse, admin=admin)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url(""), viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def sign_in(page: Page, account: Account, password: str | None = None) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(password or account.password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def h1(page: Page) -> Locator:
    return page.get_by_role("heading", level=1)


# --- accessibility helpers -------------------------------------------------------------------

UNLABELLED_FIELDS = """() => Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(el => el.type !== 'hidden' && el.checkVisibility())
  .filter(el => {
    const text = node => (node && node.textContent || '').trim() !== '';
    const byLabel = Array.from(el.labels || []).some(text);
    const byAria = (el.getAttribute('aria-label') || '').trim() !== '';
    const byRef = (el.getAttribute('aria-labelledby') || '').split(/\\s+/)
      .some(id => id && text(document.getElementById(id)));
    return !(byLabel || byAria || byRef);
  })
  .map(el => el.outerHTML)"""


def assert_accessibility_basics(page: Page) -> None:
    assert page.evaluate(UNLABELLED_FIELDS) == [], f"fields without a label on {page.url}"
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_count(1)
    expect(page).to_have_title(re.compile(r"\S.* · clinic-ops$"))
    # From the top of the document (as after clicking the page background; an autofocused field
    # would otherwise be the starting point), the first Tab lands on the skip link.
    assert page.evaluate("() => document.elementFromPoint(1, 1).tagName") in ("BODY", "HTML")
    page.mouse.click(1, 1)
    page.keyboard.press("Tab")
    skip = page.locator(":focus")
    expect(skip).to_have_text("Skip to content")
    expect(skip).to_have_attribute("href", "#main")
    expect(skip).to_be_in_viewport()  # shown once focused
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    # Drop the #main the skip link added, or an action-less form would carry it on to the next page.
    page.evaluate("() => history.replaceState(null, '', location.pathname + location.search)")


# --- the tests -------------------------------------------------------------------------------


def test_nurse_signs_in_sees_dashboard_and_signs_out(page: Page, server: LiveServer) -> None:
    nurse = server.nurse
    sign_in(page, nurse)
    expect(page).to_have_url(server.url("/"))
    expect(h1(page)).to_have_text("Today")
    expect(page.get_by_role("main")).to_contain_text(f"Signed in as {nurse.name} (nurse).")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Today")).to_have_attribute("aria-current", "page")
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)  # nurses cannot see users
    expect(page.get_by_test_id("sign-out")).to_have_text(f"Sign out {nurse.name}")
    signed_in_cookies = page.context.cookies()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(server.url("/login"))
    expect(h1(page)).to_have_text("Sign in")
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)$"))
    expect(h1(page)).to_have_text("Sign in")

    # Signing out ends the session on the server: the old cookie, replayed, opens nothing.
    page.context.add_cookies(signed_in_cookies)  # type: ignore[arg-type]
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_admin_enrols_totp_and_adds_a_user(page: Page, server: LiveServer) -> None:
    admin = server.admin
    sign_in(page, admin)
    expect(page).to_have_url(server.url("/login/enrol"))
    expect(h1(page)).to_have_text("Set up your second factor")
    assert_accessibility_basics(page)
    secret = page.get_by_test_id("totp-secret").input_value()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    admin.totp_secret = secret
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(page).to_have_url(server.url("/"))
    expect(h1(page)).to_have_text("Today")
    expect(page.get_by_role("main")).to_contain_text(f"Signed in as {admin.name} (admin).")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    expect(page).to_have_url(server.url("/admin/users"))
    expect(h1(page)).to_have_text("Users")
    assert_accessibility_basics(page)
    rows = page.get_by_role("table").locator("tbody tr")
    expect(rows.filter(has_text=admin.email)).to_contain_text("active · 2FA")  # the enrolment was saved
    expect(rows.filter(has_text=server.nurse.email)).to_contain_text("RN RN-4471")

    expect(page.get_by_role("heading", name="Add a user", level=2)).to_be_visible()
    form = page.locator("form", has=page.get_by_role("button", name="Create user"))
    new_email = f"prescriber.{uuid.uuid4().hex[:8]}@browser.test"
    form.get_by_label("Name").fill("Priya Lindqvist")
    form.get_by_label("Email").fill(new_email)
    form.get_by_label("Role").select_option("prescriber")
    form.get_by_label("Licence type").select_option("MD")
    form.get_by_label("Licence number").fill("MD-90210")
    form.get_by_label("Initial password").fill("correct horse battery staple")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/admin/users")) as created:
        form.get_by_role("button", name="Create user").click()
    assert created.value.status == 302
    expect(page).to_have_url(server.url("/admin/users"))
    expect(page.get_by_role("status")).to_have_text(f"User {new_email} created.")
    new_row = rows.filter(has_text=new_email)
    expect(new_row).to_have_count(1)
    actions = re.compile(r"Disable\s+Reset 2FA\s+New password for Priya Lindqvist\s+Reset password")
    expect(new_row.locator("td")).to_have_text(
        ["Priya Lindqvist", new_email, "prescriber", "MD MD-90210", "yes", "active", re.compile(".*"), actions]
    )

    # A too-short password: the browser's own minlength check stops the form first...
    short_email = f"short.{uuid.uuid4().hex[:8]}@browser.test"
    form.get_by_label("Name").fill("Sam Short")
    form.get_by_label("Email").fill(short_email)
    form.get_by_label("Role").select_option("front_desk")
    password = form.get_by_label("Initial password")
    password.fill("too-short")
    form.get_by_role("button", name="Create user").click()
    assert password.evaluate("el => el.validity.tooShort"), "minlength=12 did not stop the form"
    expect(page).to_have_url(server.url("/admin/users"))
    expect(rows.filter(has_text=short_email)).to_have_count(0)
    # ...and the server refuses it too when that check is bypassed.
    form.evaluate("f => { f.noValidate = true; }")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/admin/users")) as refused:
        form.get_by_role("button", name="Create user").click()
    assert refused.value.status == 422
    page.wait_for_load_state()
    error = page.locator("#password-error")
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text("12")
    expect(form.get_by_label("Initial password")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Initial password")).to_have_value("")  # never echoed back
    expect(form.get_by_label("Email")).to_have_value(short_email)  # the rest is kept
    expect(form.get_by_label("Role")).to_have_value("front_desk")
    expect(rows.filter(has_text=short_email)).to_have_count(0)
    with closing(sqlite3.connect(server.database)) as conn:
        count = conn.execute("SELECT count(*) FROM users WHERE email = ?", (short_email,)).fetchone()[0]
        assert count == 0
    page.goto("/admin/users")
    expect(rows.filter(has_text=new_email)).to_have_count(1)
    expect(rows.filter(has_text=short_email)).to_have_count(0)


def test_wrong_password_shows_an_error(page: Page, server: LiveServer) -> None:
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/login")) as answer:
        sign_in(page, server.nurse, password="not-the-password")
    assert answer.value.status == 401
    expect(page).to_have_url(server.url("/login"))
    expect(h1(page)).to_have_text("Sign in")
    alert = page.get_by_role("alert")
    expect(alert).to_have_text("Email, password or code is not correct")
    email = page.get_by_label("Email")
    expect(email).to_have_value(server.nurse.email)
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_attribute("aria-describedby", "login-error")
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_test_id("sign-out")).to_have_count(0)


def test_sign_in_page_accessibility_basics(page: Page) -> None:
    page.goto("/login")
    expect(page.get_by_label("Email")).to_be_focused()  # autofocus
    assert_accessibility_basics(page)


def test_dashboard_accessibility_basics(page: Page, server: LiveServer) -> None:
    sign_in(page, server.nurse)
    expect(h1(page)).to_have_text("Today")
    page.reload()  # a fresh load, nothing focused yet
    assert_accessibility_basics(page)


def test_dashboard_renders_with_css(page: Page, server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    failures: list[str] = []
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failures.append(f"failed {r.url}"))
    page.on("console", lambda m: failures.append(f"console {m.text} {m.location}") if m.type == "error" else None)
    sign_in(page, server.nurse)
    expect(h1(page)).to_have_text("Today")
    page.wait_for_load_state("load")  # every stylesheet is in
    # No worker or beat runs here, so the dashboard must warn that reminders are not going out.
    expect(page.get_by_role("alert")).to_contain_text("The background scheduler does not seem to be running.")

    sheets = page.evaluate(
        """() => Array.from(document.styleSheets).filter(s => s.href)
          .map(s => [new URL(s.href).pathname, s.cssRules.length])"""
    )
    assert dict(sheets).keys() == {"/static/vendor/pico-2.1.1.min.css", "/static/app.css"}, sheets
    assert dict(sheets)["/static/vendor/pico-2.1.1.min.css"] > 100, sheets
    style = page.evaluate(
        """() => {
          const css = (sel, prop) => getComputedStyle(document.querySelector(sel)).getPropertyValue(prop);
          return {font: css('body', 'font-family'), button: css('[data-testid=sign-out]', 'border-radius'),
                  skip: css('.skip-link', 'left'), banner: css('.banner-warning', 'background-color')};
        }"""
    )
    assert "system-ui" in style["font"], style  # Pico's font stack, not the browser's serif default
    assert style["button"] not in ("", "0px"), style
    assert style["skip"] == "-999px", style  # app.css
    assert style["banner"] == "rgb(255, 244, 214)", style  # app.css
    # The app has no favicon; Chromium's own request for one is the only 404 allowed.
    assert [f for f in failures if "/favicon.ico" not in f] == []

    shot = tmp_path_factory.mktemp("screenshots") / "dashboard.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_host_cookie_is_kept_on_loopback(browser: Browser, server: LiveServer, host: str) -> None:
    """Production cookie settings work over plain http on loopback in Chromium."""
    context = browser.new_context(base_url=server.url("", host=host))
    try:
        page = context.new_page()
        sign_in(page, server.nurse)
        expect(h1(page)).to_have_text("Today")
        cookies = context.cookies()
        assert [(c["name"], c["domain"], c["path"]) for c in cookies] == [("__Host-session", host, "/")]
        assert cookies[0]["secure"] and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Lax"
        assert cookies[0]["expires"] == -1  # a session cookie; the server row carries the lifetime
    finally:
        context.close()
