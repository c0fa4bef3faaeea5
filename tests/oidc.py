"""Sign-in for the team tests, with real components: a local OpenID Connect provider (oidc-provider-mock), a
`streamlit run app.py` whose `[auth]` secrets point at it, and Chromium driven through the provider's form.

Nothing is written into the repository: the secrets file lives next to the server's RECIPE_HOME and reaches
Streamlit through its `secrets.files` option (the repo's own .streamlit/config.toml still applies: the server runs
in the repo, where Streamlit reads the project's config).
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from walk_data import ROOT, free_port, on_screen_problem

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: between fork and exec only the call itself is safe


def _die_with_parent(parent: int):
    """A preexec_fn: the child gets SIGTERM when the test process dies (even by SIGKILL, when no finally runs), so a
    crashed run leaves no provider or server holding a port. Linux only, which is where these tests run. The signal
    comes when the *thread* that started the child ends: start them from the main thread, as pytest fixtures do."""
    def preexec() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec


def _start(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent(os.getpid()))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_for(url: str, proc: subprocess.Popen, log: Path, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{what} did not start: " + log.read_text(errors="replace")[-2000:])
        time.sleep(0.3)


# -- the provider ------------------------------------------------------------------------------------------------
@contextmanager
def oidc_provider(log: Path):
    """`python -m oidc_provider_mock` on a free loopback port; yields its base URL (the issuer). Anyone may sign in
    as any subject through its form; set_claims() gives a subject an email first."""
    port = free_port()
    proc = _start([sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--host", "127.0.0.1"], log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(metadata_url(url), proc, log, "the OpenID provider")
        yield url
    finally:
        _stop(proc)


def metadata_url(provider_url: str) -> str:
    return provider_url + "/.well-known/openid-configuration"


def set_claims(provider_url: str, sub: str, **claims) -> None:
    """What the provider's ID token says about `sub` (its form takes the subject only; for a subject it has never
    seen, the email is the subject itself)."""
    request = urllib.request.Request(f"{provider_url}/users/{urllib.parse.quote(sub, safe='')}", method="PUT",
                                     data=json.dumps(claims).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204, response.status


# -- the app -----------------------------------------------------------------------------------------------------
def auth_secrets(provider_url: str, app_port: int) -> str:
    """The `[auth]` section a team server needs (the README's, with the local provider): the client id and secret
    are anything, since the mock provider registers no clients."""
    return "\n".join([
        "[auth]",
        f'redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"',
        f'cookie_secret = "{secrets.token_hex(32)}"',
        'client_id = "recipe-tests"',
        'client_secret = "not-a-secret"',
        f'server_metadata_url = "{metadata_url(provider_url)}"',
        "",
    ])


@contextmanager
def team_server(home: Path, provider_url: str, log: Path | None = None, env: dict | None = None):
    """`streamlit run app.py` on a free loopback port, signing people in through `provider_url`; its RECIPE_HOME is
    `home` (its SQLite store unless `env` names RECIPE_STORE_URL). Yields the base URL."""
    port = free_port()
    secrets_file = home.parent / f"{home.name}-secrets.toml"
    secrets_file.write_text(auth_secrets(provider_url, port))
    secrets_file.chmod(0o600)
    log = log or home.parent / f"{home.name}-streamlit.log"
    server_env = {**os.environ, "RECIPE_HOME": str(home)}
    server_env.pop("RECIPE_STORE_URL", None)
    server_env.update(env or {})
    proc = _start([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                   "--server.address", "127.0.0.1", "--server.headless", "true",
                   "--secrets.files", str(secrets_file)], log, env=server_env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url + "/_stcore/health", proc, log, "streamlit")
        yield url
    finally:
        _stop(proc)


# -- the browser -------------------------------------------------------------------------------------------------
def sign_in_button(page):
    return page.get_by_role("button", name="Sign in", exact=True)


def sign_in(page, base_url: str, sub: str, email: str | None = None, timeout: float = 60) -> None:
    """Sign `page`'s browser context in as `sub` (with `email` in the ID token when given), as a person does:
    the app's sign-in button, the provider's form, back to the app, which shows who is signed in."""
    page.goto(base_url)
    sign_in_button(page).click(timeout=timeout * 1000)
    page.wait_for_url("**/oauth2/authorize?**", timeout=timeout * 1000)
    if email is not None:
        parts = urllib.parse.urlsplit(page.url)
        set_claims(f"{parts.scheme}://{parts.netloc}", sub, email=email)
    page.fill("input[name=sub]", sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(base_url + "/**", timeout=timeout * 1000)
    page.get_by_test_id("stSidebar").get_by_text("Signed in as").wait_for(timeout=timeout * 1000)


# -- the operator ------------------------------------------------------------------------------------------------
def recipe_cli(home: Path, *args: str, env: dict | None = None) -> str:
    """`python -m recipe_core ARGS` as the operator of the server on `home` (its SQLite store unless `env` names
    RECIPE_STORE_URL); its stdout. A failed command fails the test with its one error line."""
    cli_env = {**os.environ, "RECIPE_HOME": str(home)}
    cli_env.pop("RECIPE_STORE_URL", None)
    cli_env.update(env or {})
    done = subprocess.run([sys.executable, "-m", "recipe_core", *args], cwd=ROOT, env=cli_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"recipe_core {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}"
    return done.stdout


def cli_json(home: Path, *args: str, env: dict | None = None):
    return json.loads(recipe_cli(home, *args, "--json", env=env))


def sign_out(page, base_url: str, timeout: float = 60) -> None:
    """The sidebar's Sign out; a provider that publishes an end-session endpoint (this one does, as Google and
    Entra do) asks to confirm, then sends the browser back to the app, which offers to sign in again."""
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    deadline = time.time() + timeout
    while "/oauth2/end_session" not in page.url and not sign_in_button(page).is_visible():
        assert time.time() < deadline, f"signing out went nowhere: {page.url}"
        page.wait_for_timeout(250)
    if "/oauth2/end_session" in page.url:
        page.get_by_role("button", name="End session").click()
        page.wait_for_url(base_url + "/**", timeout=timeout * 1000)
    sign_in_button(page).wait_for(timeout=timeout * 1000)


# -- reading the app as a person does ------------------------------------------------------------------------
DATA_WIDGETS = ('[data-testid="stSelectbox"], [data-testid="stMultiSelect"], [data-testid="stDataFrame"], '
                '[data-testid="stTable"], [data-testid="stFileUploader"], [data-testid="stTextInput"], '
                '[data-testid="stPlotlyChart"], [data-testid="stMetric"], [data-testid="stTabs"]')


def page_paths() -> list[str]:
    """Every page app.py registers, as its URL path ("" for the default page): a page added later is checked too."""
    source = (ROOT / "app.py").read_text()
    pages = re.findall(r'st\.Page\(\s*"pages/(\w+)\.py"([^)]*)\)', source)
    assert pages, "app.py registers no st.Page"
    return ["" if "default=True" in rest else name for name, rest in pages]


def new_page(browser):
    """A page in a browser context of its own: one person (contexts share no cookies)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    return page


def shown(text: str) -> str:
    """Text as a person reads it: safetext's invisible word joiners (which keep an email from becoming a link)
    dropped, runs of white space one space."""
    return re.sub(r"\s+", " ", text.replace("\u2060", ""))


def sidebar_text(page) -> str:
    return shown(page.get_by_test_id("stSidebar").inner_text())


def wait_sidebar(page, text: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while text not in sidebar_text(page):
        assert time.time() < deadline, f"the sidebar never read {text!r}: {sidebar_text(page)}"
        page.wait_for_timeout(250)


def settled(page, timeout: float = 60) -> None:
    """The script run is over (Streamlit marks its root with the script's state), and no exception box is shown."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout * 1000)
    page.wait_for_timeout(500)  # "Page not found" is a dialog drawn just after the run
    problem = on_screen_problem(page)
    assert problem is None, f"{page.url}: {problem}"
