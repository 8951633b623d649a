"""The desk in a real browser: Debian's headless Chromium driven by Playwright, against
a real network (nl and be on loopback) and a real `liaison desk` process.

An officer who has never used a shell logs in with the printed link, reads a flash alert,
sends one with a tag and follows its delivery timeline until the recipient opened it,
sees a tag that does not allow DE-NW refused before anything is sent, and acknowledges a
signal; a change from another origin or without the CSRF token is refused.

Chromium comes from `make test` (the Makefile installs Debian's package when it is
missing); without it this test fails, saying how to install it, and is never skipped.
With LIAISON_DESK_SCREENSHOTS=DIR it saves the main screens there (docs/desk/).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.desk_net import DeskNet, desk_network, officer_env, running_desk
from tests.integration.network import run_cli
from tests.waits import PATIENCE_S

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = int(PATIENCE_S * 1000)


@pytest.fixture(scope="module")
def desks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeskNet]:
    with desk_network(tmp_path_factory.mktemp("desk-browser")) as net:
        yield net


def _cli(agent_path: Path, *args: str) -> str:
    return run_cli(*args, "--keystore", str(agent_path), env=officer_env()).stdout


def test_an_officer_reads_sends_follows_and_acknowledges_in_a_browser(
        desks: DeskNet, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium when "
                    "run as root; otherwise run `sudo apt-get install -y chromium`")
    try:
        from playwright.sync_api import Route, expect, sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: it is in the dev extras (`make test` installs "
                    "them; or pip install -e '.[dev]')")

    shots = os.environ.get("LIAISON_DESK_SCREENSHOTS")
    peer = desks.peer.path
    # be/jpeeters writes a flash alert to nl's duty desk, and raises a signal for it.
    alert = _cli(peer, "send", "--to", "nl/desk", "--subject", "Flash: armed suspect heading "
                 "north on the A2", "--text", "Grey Audi A6, Belgian plates 1-ABC-234.",
                 "--handling", "H1", "--tlp", "AMBER", "--source", "B", "--accuracy", "2",
                 "--purpose", "armed robbery investigation", "--precedence", "flash").split()[0]
    secret = _cli(peer, "send", "--to", "nl/desk", "--subject", "Informant report",
                  "--text", "Meeting on Friday in Maastricht.", "--handling", "H2", "--tlp",
                  "AMBER", "--purpose", "armed robbery investigation").split()[0]
    asked = _cli(peer, "request", "--to", "nl/desk", "--urgency", "urgent-direct",
                 "--subject", "Registered keeper of NL plate", "--text", "Who keeps XK-123-B?",
                 "--purpose", "armed robbery investigation").split()[0]
    _cli(peer, "signal", "raise", "--category", "travel-to-conflict-zone", "--severity",
         "high", "--region", "BE-VLI", "--share-with", "nl", "--text",
         "Booked a one-way flight to a conflict zone.", "--subject-name", "Jan Janssens",
         "--subject-birth-date", "1990-04-12", "--justification", "case 2026/117")

    with running_desk(desks.desk) as desk, sync_playwright() as play:
        context = play.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        try:
            page = context.new_page()
            page.goto(desk.login_url)
            assert page.url == desk.base + "/"  # the token left the address bar

            def shot(name: str) -> None:
                if shots:
                    Path(shots).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)

            # --- inbox: the flash alert first, with its tag badges; read and acknowledge
            row = page.locator(f"#inbox-table tr[data-id='{alert}']")
            expect(row).to_contain_text("Flash: armed suspect")
            expect(page.locator("#inbox-table tbody tr").first).to_have_attribute(
                "data-id", alert)
            expect(row.locator(".badge.handling")).to_have_text("H1")
            expect(row.locator(".badge.tlp")).to_have_text("TLP:AMBER")
            expect(row.locator(".badge.evaluation")).to_have_text("B2")
            shot("inbox")
            # Every control has a label a screen reader announces.
            unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll(
                'input, select, textarea, button')).filter((e) => !(e.labels && e.labels.length)
                && !e.getAttribute('aria-label') && !e.textContent.trim()).map((e) => e.id)""")
            assert unlabelled == []
            # A refresh (every live update makes one) keeps each listed row's element, so a
            # click that lands during one is not lost.
            kept = page.locator(f"#inbox-table tr[data-id='{secret}'] button").element_handle()
            page.locator("#inbox-refresh").click()
            expect(page.locator("#inbox-table")).to_have_attribute("aria-busy", "false")
            assert kept.evaluate("(e) => e.isConnected")
            # ...and the keyboard alone opens the envelope.
            row.get_by_role("button").focus()
            page.keyboard.press("Enter")
            expect(page.locator("#reader-text")).to_have_text(
                "Grey Audi A6, Belgian plates 1-ABC-234.")
            expect(page.locator("#reader-tag")).to_contain_text("judicial proceedings")
            shot("read")
            page.locator("#reader-ack").click()
            expect(page.locator("#notice")).to_have_text("Acknowledged.")
            expect(page.locator(f"#inbox-table tr[data-id='{alert}']")).to_have_count(0)

            # --- compose: a tag that does not allow DE-NW is refused before sending
            page.get_by_role("button", name="Compose").click()
            page.get_by_label("To (officer ids").fill("de-nw/kmueller")
            page.get_by_label("Subject").fill("Suspect vehicle")
            page.get_by_label("Message").fill("Seen near Aachen.")
            page.get_by_label("Purpose").fill("armed robbery investigation")
            page.get_by_label("Nodes it may reach").fill("be,nl,lu")
            expect(page.locator("#compose-check")).to_contain_text("Refused before sending")
            expect(page.locator("#compose-check")).to_contain_text("de-nw")
            shot("compose-refused")
            page.locator("#compose-send").click()
            expect(page.locator("#notice")).to_contain_text("Refused before sending")

            # --- ...and one the tag allows goes out, explained as it is picked
            page.get_by_label("To (officer ids").fill("be/jpeeters")
            page.get_by_label("Nodes it may reach").fill("")
            page.get_by_label("Handling code").select_option("H2")
            expect(page.locator("#c-handling-meaning")).to_contain_text(
                "not to be disseminated")
            page.get_by_label("TLP", exact=True).select_option("RED")
            expect(page.locator("#c-tlp-meaning")).to_contain_text("named recipients only")
            expect(page.locator("#compose-check")).to_contain_text("The policy allows")
            shot("compose")
            page.locator("#compose-send").click()
            expect(page.locator("#notice")).to_contain_text("Sent ")
            sent_id = page.locator("#timeline-id").input_value()
            recipient = page.locator("#timeline section[data-officer='be/jpeeters']")
            expect(recipient.locator("li[data-step='accepted']")).to_have_class("done")

            # --- the timeline fills as the recipient's client reads it
            _cli(peer, "read", sent_id)
            for step in ("relayed", "delivered", "opened"):
                expect(recipient.locator(f"li[data-step='{step}']")).to_have_class("done")
            expect(recipient.locator("h4")).to_have_text("be/jpeeters: opened")
            shot("timeline")

            # --- a signal for this desk, acknowledged
            page.get_by_role("button", name="Signals").click()
            signal_row = page.locator("#signals-incoming li").first
            expect(signal_row).to_contain_text("be/jpeeters")
            shot("signals")
            signal_row.get_by_role("button", name="Acknowledge signal").click()
            expect(page.locator("#notice")).to_contain_text("Signal acknowledged")
            expect(page.locator("#signals-incoming li").first).to_contain_text("acknowledged")
            page.locator("#s-category").select_option("recruitment-activity")
            page.locator("#s-severity").select_option("medium")
            page.locator("#s-region").fill("NL-LI")
            page.locator("#s-share").fill("be")
            page.locator("#s-text").fill("Leaflets handed out near a school.")
            page.get_by_label("Name", exact=True).fill("JANSSENS, jan")
            page.get_by_label("Birth date").fill("12/04/1990")
            page.get_by_label("Why you match this person").fill("case 2026/117, Maastricht")
            page.get_by_role("button", name="Raise").click()
            expect(page.locator("#notice")).to_contain_text(
                "raised for be/desk, with the subject's pseudonym")
            expect(page.locator("#signals-raised")).to_contain_text("(medium)")
            # the same person, signalled by BE and by NL: matched without a name
            expect(page.locator("#signals-matches")).to_contain_text("concern the same person")
            expect(page.locator("#signals-matches")).not_to_contain_text("Janssens")

            # --- forward with consent: H2 needs the owner's, asked for and granted
            # The inbox is shown only once loaded: its rows from the last visit never move
            # under the pointer as fresh ones come in (a click on Read was once lost so).
            held: list[Route] = []
            page.route("**/api/inbox*", lambda route: held.append(route))
            page.get_by_role("button", name="Inbox").click()
            expect(page.locator("#screen-signals")).to_be_visible()
            expect(page.locator("#screen-inbox")).to_be_hidden()
            page.wait_for_function("() => document.querySelector('#inbox-table')"
                                   ".getAttribute('aria-busy') === 'true'")
            assert len(held) == 1
            held[0].continue_()
            page.unroute("**/api/inbox*")
            expect(page.locator("#screen-inbox")).to_be_visible()
            page.locator(f"#inbox-table tr[data-id='{secret}']").get_by_role("button").click()
            expect(page.locator("#reader-text")).to_have_text("Meeting on Friday in Maastricht.")
            page.locator("#reader-forward-open").click()
            page.get_by_label("Forward to").fill("be/desk")
            page.get_by_label("Reason (for the owner").fill("the Belgian desk handles it")
            page.locator("#forward-form button[type='submit']").click()
            expect(page.locator("#notice")).to_contain_text("policy")
            page.locator("#consent-ask").click()
            expect(page.locator("#notice")).to_contain_text("Consent asked of be/jpeeters")
            _cli(peer, "consent", "grant", secret, "--forwarder", "nl/desk", "--for", "be/desk")
            expect(page.locator("#inbox-table")).to_contain_text(f"Consent: forward {secret}")
            page.locator("#forward-form button[type='submit']").click()
            expect(page.locator("#notice")).to_contain_text("with the owner's consent")
            shot("forward")

            # --- as the owner: a consent request for what this desk sent, granted here
            _cli(peer, "consent", "request", sent_id, "--for", "be/desk", "--reason",
                 "for the Belgian desk")
            ask = page.locator("#inbox-table tr", has_text=f"Consent request: forward {sent_id}")
            ask.get_by_role("button").click()
            expect(page.locator("#grant-forwarder")).to_have_value("be/jpeeters")
            expect(page.locator("#grant-target")).to_have_value("be/desk")
            page.get_by_role("button", name="Grant consent").click()
            expect(page.locator("#notice")).to_contain_text("Consent sent to be/jpeeters")

            # --- requests and the directory answer too
            page.get_by_role("button", name="Requests").click()
            request_row = page.locator("#requests-table tr", has_text=asked)
            expect(request_row).to_contain_text("incoming")
            expect(request_row.locator("td.due")).to_contain_text(" h ")  # counting down
            shot("requests")
            request_row.get_by_role("button").click()
            expect(page.locator("#reader-text")).to_have_text("Who keeps XK-123-B?")
            page.locator("#reader-reply-open").click()
            page.get_by_label("Your reply").fill("J. Jansen, Heerlen.")
            page.get_by_role("button", name="Send reply").click()
            expect(page.locator("#notice")).to_contain_text("Reply ")
            page.get_by_role("button", name="Directory").click()
            expect(page.locator("#directory-table")).to_contain_text("be/jpeeters")
            shot("directory")

            # --- a change from another origin, or without the CSRF token, is refused
            refused = context.request.post(desk.base + "/api/check", headers={
                "Origin": "http://evil.example", "Content-Type": "application/json"},
                data='{"to": ["be/jpeeters"]}')
            assert refused.status == 403 and refused.json()["error"] == "forbidden"
            status = page.evaluate("""async () => (await fetch('/api/envelopes/' +
                '00000000000000000000000000/ack', {method: 'POST'})).status""")
            assert status == 403
        finally:
            context.close()
    if shots:
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
