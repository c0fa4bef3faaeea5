"""Sign-in on a team server, in Chromium, through a real OpenID Connect provider (issue 14).

Each browser context is one person: two sign in at once and each sees only their own identity; a visitor who has
not signed in sees a sign-in button on every page and nothing of any dataset, a deep link included.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from oidc import (
    DATA_WIDGETS,
    cli_json,
    new_page,
    oidc_provider,
    page_paths,
    recipe_cli,
    set_claims,
    settled,
    shown,
    sidebar_text,
    sign_in,
    sign_in_button,
    sign_out,
    team_server,
    wait_sidebar,
)
from playwright.sync_api import sync_playwright
from walk_data import CHROMIUM, CHROMIUM_ARGS, main_text

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
# Words of the dataset that must never reach a visitor who has not signed in.
SECRET_NAME, SECRET_COLUMN = "quarterly-payroll", "salary_band_zx"


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    root = tmp_path_factory.mktemp("signin")
    home = root / "home"
    home.mkdir()
    data = root / "payroll.csv"
    pd.DataFrame({SECRET_COLUMN: ["a", "b", "c"] * 20, "amount": range(60)}).to_csv(data, index=False)
    dataset = cli_json(home, "ingest", str(data), "--name", SECRET_NAME)  # the operator's: shared with the team
    recipe_cli(home, "users", "add", ALICE, "--role", "member")  # Bob and Carol are given no role
    with oidc_provider(root / "provider.log") as provider, team_server(home, provider) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield {"url": url, "home": home, "browser": browser, "dataset": dataset["id"], "provider": provider}
        browser.close()


def test_two_people_signed_in_at_once_each_see_their_own_identity(team):
    alice, bob = new_page(team["browser"]), new_page(team["browser"])
    sign_in(alice, team["url"], "alice-sub", ALICE)
    sign_in(bob, team["url"], "bob-sub", BOB)
    for page in (alice, bob):  # each still themselves after the other signed in, and after a reload
        page.reload()
        page.get_by_test_id("stSidebar").get_by_text("Signed in as").wait_for()
    assert f"Signed in as {ALICE} · member" in sidebar_text(alice), sidebar_text(alice)
    assert BOB not in sidebar_text(alice)
    # Bob has no role: a signed-in person nobody was given a role is a viewer.
    assert f"Signed in as {BOB} · viewer" in sidebar_text(bob), sidebar_text(bob)
    assert ALICE not in sidebar_text(bob)
    # Signing out ends Bob's session only.
    sign_out(bob, team["url"])
    alice.reload()
    wait_sidebar(alice, f"Signed in as {ALICE}")
    for page in (alice, bob):
        page.context.close()


def test_an_unverified_email_is_not_who_you_are(team):
    """A provider that says the email is unverified: anyone could claim a teammate's address, so the subject names
    the person instead (and so gets none of the teammate's role)."""
    page = new_page(team["browser"])
    page.goto(team["url"])
    sign_in_button(page).click()
    page.wait_for_url("**/oauth2/authorize?**")
    set_claims(team["provider"], "mallory-sub", email=ALICE, email_verified=False)
    page.fill("input[name=sub]", "mallory-sub")
    page.get_by_role("button", name="Authorize").click()
    page.get_by_test_id("stSidebar").get_by_text("Signed in as").wait_for()
    text = sidebar_text(page)
    assert "Signed in as mallory-sub · viewer" in text, text
    assert ALICE not in text
    page.context.close()


def test_a_visitor_who_has_not_signed_in_sees_only_the_sign_in_button(team):
    page = new_page(team["browser"])
    for path in page_paths():
        page.goto(f"{team['url']}/{path}")
        sign_in_button(page).wait_for()
        settled(page)
        app = page.locator('[data-testid="stMain"], [data-testid="stSidebarUserContent"]')
        buttons = [shown(b).strip() for b in app.get_by_role("button").all_inner_texts()]
        assert len(buttons) == 1 and buttons[0].endswith("Sign in"), (path, buttons)  # after its icon's name
        assert page.locator(DATA_WIDGETS).count() == 0, (path, main_text(page))
        html = page.content()
        assert SECRET_NAME not in html and SECRET_COLUMN not in html, path
    page.context.close()


def test_a_deep_link_before_sign_in_shows_nothing_of_its_dataset(team):
    link = f"{team['url']}/compare?dataset={team['dataset']}"
    page = new_page(team["browser"])
    page.goto(link)
    sign_in_button(page).wait_for()
    settled(page)
    html = page.content()
    assert SECRET_NAME not in html and SECRET_COLUMN not in html
    assert team["dataset"] not in shown(page.locator("body").inner_text())  # not even its id
    assert page.locator(DATA_WIDGETS).count() == 0, main_text(page)
    # The same link once signed in (as a viewer: the dataset is shared) does show it: the checks above can fail.
    sign_in(page, team["url"], "carol-sub", CAROL)
    page.goto(link)
    wait_sidebar(page, f"id {team['dataset']}")
    settled(page)
    page.context.close()
