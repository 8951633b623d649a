"""Officer and officer-admin commands that need no running node: init, enrol, audit, refusals.

Everything runs on real files (PKI, keystore, the node's SQLite database); the node URL in
the keystore points at a closed port, so any command that got as far as the network would
fail with ``unavailable``: a test that expects another error proves it came first.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from liaison_net.cli.main import main
from liaison_net.client import keystore
from liaison_net.core.almanac import Almanac
from liaison_net.core.identity import (
    EnrolmentRequest,
    OfficerCard,
    sign_enrolment_request,
    verify_card,
    verify_enrolment_request,
)
from liaison_net.drills.harness import free_ports, write_node_config
from liaison_net.pki import certificates
from liaison_net.store.node_store import NodeStore

PASSPHRASE = "a long enough passphrase"
Run = Callable[..., "Result"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Network:
    root: Path
    config: Path
    node_url: str

    @property
    def ca(self) -> Path:
        return self.root / "certs" / "ca.crt"

    @property
    def database(self) -> Path:
        return self.root / "data" / "nl" / "node.sqlite3"


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> Run[..., Result]:
    """Run `liaison ARGS` through the real entry point (error handler and exit codes)."""
    monkeypatch.setenv("LIAISON_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("LIAISON_KEYSTORE", raising=False)

    def invoke(*args: str | Path, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "argv", ["liaison", *map(str, args)])
        monkeypatch.setattr(sys, "stdin", _Stdin(stdin))
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


class _Stdin:
    """A piped (non-terminal) stdin."""

    def __init__(self, text: str) -> None:
        self.text = text

    def isatty(self) -> bool:
        return False

    def read(self, n: int = -1) -> str:
        return self.text if n < 0 else self.text[:n]


@pytest.fixture
def network(tmp_path: Path, run: Run) -> Network:
    certs = tmp_path / "certs"
    assert run("admin", "init-network", "--dir", certs).code == 0
    assert run("admin", "init-node", "nl", "--dir", certs, "--ca-dir", certs).code == 0
    config = tmp_path / "node_configs" / "nl.toml"
    fed, client, be = free_ports(3)  # nothing listens on them
    write_node_config(config, "nl", federation_port=fed, client_port=client,
                      peers={"be": f"https://127.0.0.1:{be}"})
    return Network(tmp_path, config, f"https://127.0.0.1:{client}")


def _init_officer(run: Run, network: Network, officer: str = "nl/jdevries",
                  name: str = "Jan de Vries",
                  almanac: tuple[str, ...] = ()) -> tuple[Path, Path, Result]:
    handle = officer.replace("/", "_")
    ks = network.root / f"{handle}.keystore"
    request = network.root / f"{handle}.request"
    result = run("officer", "init", "--id", officer, "--name", name, "--role",
                 "liaison officer", "--node-url", network.node_url, "--ca", network.ca,
                 "--keystore", ks, "--request-out", request, *almanac)
    return ks, request, result


def _cards(database: Path) -> list[tuple[str, str, str, int, bytes]]:
    async def read() -> list[tuple[str, str, str, int, bytes]]:
        store = NodeStore(database, "nl")
        await store.open()
        try:
            return await store.directory()
        finally:
            await store.close()

    return asyncio.run(read())


def _node_public(network: Network) -> bytes:
    ca = certificates.load_ca_certificate(network.ca)
    pem = (network.root / "certs" / "nl" / "signing.crt").read_bytes()
    node, public = certificates.verify_node_signing_certificate(pem, ca, now=datetime.now(UTC))
    assert node == "nl"
    return public


# --- officer init ---------------------------------------------------------------------------


def test_officer_init_creates_a_0600_keystore_and_a_verifiable_request(
        run: Run, network: Network) -> None:
    ks_path, request_path, result = _init_officer(run, network)
    assert result.code == 0, result.err
    assert stat.S_IMODE(ks_path.stat().st_mode) == 0o600
    ks = keystore.load(ks_path, PASSPHRASE.encode())
    assert ks.node_url == network.node_url
    assert ks.ca_cert_pem == network.ca.read_bytes()
    request = verify_enrolment_request(request_path.read_bytes())
    assert (request.officer, request.signing_public) == ("nl/jdevries", ks.signing.public)
    assert ks.signing.key_id.hex() in result.out
    for secret in (PASSPHRASE, ks.signing.seed.hex(), ks.encryption.secret.hex()):
        assert secret not in result.out + result.err


def test_officer_init_refuses_to_overwrite_a_keystore(run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    before = ks_path.read_bytes()
    _, _, second = _init_officer(run, network)
    assert second.code == 2
    assert second.err.startswith("error: conflict: a keystore already exists")
    assert ks_path.read_bytes() == before


def test_officer_init_refuses_a_short_passphrase(run: Run, network: Network,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIAISON_PASSPHRASE", "short")
    ks_path, _, result = _init_officer(run, network)
    assert result.code == 2 and "at least 8 characters" in result.err
    assert not ks_path.exists()


def test_passphrase_file_is_used_when_the_environment_has_none(
        run: Run, network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    _init_officer(run, network)
    monkeypatch.delenv("LIAISON_PASSPHRASE")
    secret = network.root / "pass.txt"
    secret.write_text("wrong passphrase here\n")
    ks_path = network.root / "nl_jdevries.keystore"
    result = run("inbox", "--keystore", ks_path, "--passphrase-file", secret)
    assert result.code == 2
    assert result.err == "error: cannot_open: wrong passphrase or damaged keystore\n"


# --- admin enrol-officer --------------------------------------------------------------------


def test_enrol_officer_stores_a_card_the_node_key_vouches_for(
        run: Run, network: Network) -> None:
    ks_path, request, _ = _init_officer(run, network)
    result = run("admin", "enrol-officer", request, "--config", network.config, "--json")
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    assert answer["officer"] == "nl/jdevries" and answer["version"] == 1

    [(officer, name, role, version, raw)] = _cards(network.database)
    card: OfficerCard = verify_card(raw, node_public=_node_public(network), node_id="nl",
                                    now=answer["valid_from"])
    ks = keystore.load(ks_path, PASSPHRASE.encode())
    assert (officer, name, role, version) == ("nl/jdevries", "Jan de Vries",
                                              "liaison officer", 1)
    assert card.signing_public == ks.signing.public
    assert card.encryption_public == ks.encryption.public
    assert card.valid_until - card.valid_from == 365 * 86_400_000
    assert answer["signing_key_id"] == ks.signing.key_id.hex()


def test_enrolling_again_issues_the_next_card_version(run: Run, network: Network) -> None:
    _, request, _ = _init_officer(run, network)
    run("admin", "enrol-officer", request, "--config", network.config)
    result = run("admin", "enrol-officer", request, "--config", network.config)
    assert result.code == 0, result.err
    assert "card version 2" in result.out
    assert [c[3] for c in _cards(network.database)] == [2]


def test_enrol_officer_refuses_an_officer_of_another_node(run: Run,
                                                          network: Network) -> None:
    _, request, _ = _init_officer(run, network, officer="be/apeeters", name="An Peeters")
    result = run("admin", "enrol-officer", request, "--config", network.config)
    assert result.code == 2
    assert "does not belong to node nl" in result.err
    assert not network.database.exists() or _cards(network.database) == []


def test_enrol_officer_refuses_a_forged_request(run: Run, network: Network) -> None:
    _, request, _ = _init_officer(run, network)
    raw = bytearray(request.read_bytes())
    raw[-5] ^= 0x01  # inside the signature
    request.write_bytes(bytes(raw))
    result = run("admin", "enrol-officer", request, "--config", network.config)
    assert result.code == 2
    assert result.err.startswith("error: bad_signature:")


def test_enrol_officer_refuses_a_key_enrolled_for_someone_else(
        run: Run, network: Network) -> None:
    """A second officer id must not take over an enrolled signing key."""
    _, request, _ = _init_officer(run, network)
    run("admin", "enrol-officer", request, "--config", network.config)
    ks = keystore.load(network.root / "nl_jdevries.keystore", PASSPHRASE.encode())
    thief = sign_enrolment_request(
        EnrolmentRequest("nl/thief", "Thief", "none", ks.signing.public,
                         ks.encryption.public, Almanac()), ks.signing)
    (network.root / "thief.request").write_bytes(thief)
    result = run("admin", "enrol-officer", network.root / "thief.request", "--config",
                 network.config)
    assert result.code == 2 and "already enrolled for nl/jdevries" in result.err
    assert [c[0] for c in _cards(network.database)] == ["nl/jdevries"]


# --- admin audit verify ---------------------------------------------------------------------


def test_audit_verify_passes_then_names_the_edited_entry(run: Run,
                                                         network: Network) -> None:
    for officer, name in (("nl/jdevries", "Jan de Vries"), ("nl/mbakker", "Mia Bakker")):
        _, request, _ = _init_officer(run, network, officer=officer, name=name)
        assert run("admin", "enrol-officer", request, "--config", network.config).code == 0
    ok = run("admin", "audit", "verify", "--config", network.config)
    assert (ok.code, ok.out) == (0, "audit chain OK: 2 entries\n")

    with sqlite3.connect(network.database) as db:
        db.execute("UPDATE audit SET detail = ? WHERE seq = 1",
                   ('{"officer":"nl/someone-else","version":1}',))
    broken = run("admin", "audit", "verify", "--config", network.config)
    assert broken.code == 1
    assert broken.out.startswith("audit chain BROKEN at entry 1")
    as_json = run("admin", "audit", "verify", "--config", network.config, "--json")
    assert as_json.code == 1
    report = json.loads(as_json.out)
    assert {k: report[k] for k in ("entries", "ok", "broken_at")} == {
        "entries": 2, "ok": False, "broken_at": 1}
    assert report["witnessed_checkpoints"] == 0  # no peer: checked only against itself


def test_audit_verify_without_a_database_says_so(run: Run, network: Network) -> None:
    result = run("admin", "audit", "verify", "--config", network.config)
    assert result.code == 2 and "no node database" in result.err
    assert not network.database.exists()


# --- send: the policy refuses before the network is touched ---------------------------------


SEND = ("send", "--subject", "Vehicle sighting", "--text", "Blue van, NL plates",
        "--handling", "H0", "--tlp", "AMBER", "--purpose", "drug trafficking inquiry")


def test_send_outside_share_with_is_refused_by_policy_before_any_network_call(
        run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    result = run(*SEND, "--keystore", ks_path, "--to", "de-nw/kschmidt",
                 "--share-with", "nl,be,lu")
    assert result.code == 2
    assert result.err == ("error: policy.share_with: not sending to de-nw/kschmidt: send to "
                          "de-nw refused: the target node is not in the tag's share_with "
                          "(add de-nw to --share-with if the information may go there)\n")


def test_send_within_share_with_gets_as_far_as_the_network(run: Run,
                                                           network: Network) -> None:
    """The control case: same message, allowed recipient, so the closed port answers."""
    ks_path, _, _ = _init_officer(run, network)
    result = run(*SEND, "--keystore", ks_path, "--to", "be/apeeters",
                 "--share-with", "nl,be,lu")
    assert result.code == 2
    assert result.err.startswith(f"error: unavailable: cannot reach node at {network.node_url}")


def test_send_refuses_a_bad_tag_or_content_before_the_network(run: Run,
                                                              network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    no_conditions = run("send", "--keystore", ks_path, "--to", "be/apeeters", "--subject", "s",
                        "--text", "t", "--handling", "H3", "--tlp", "AMBER", "--purpose", "p")
    assert no_conditions.code == 2 and "tag conditions must not be empty" in no_conditions.err
    not_owner_node = run(*SEND, "--keystore", ks_path, "--to", "be/apeeters",
                         "--share-with", "be")
    assert not_owner_node.code == 2 and "must include the owner's node" in not_owner_node.err
    escape = run("send", "--keystore", ks_path, "--to", "be/apeeters", "--subject",
                 "\x1b[2J", "--text", "t", "--handling", "H0", "--tlp", "RED",
                 "--purpose", "p")
    assert escape.code == 2 and "control character" in escape.err


def test_send_reads_the_text_from_stdin(run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    result = run("send", "--keystore", ks_path, "--to", "be/apeeters", "--subject", "s",
                 "--handling", "H0", "--tlp", "AMBER", "--purpose", "p",
                 stdin="line one\r\nline two\r\n")
    assert result.err.startswith("error: unavailable:")  # got past content checks


def test_read_and_ack_refuse_a_malformed_id_before_the_network(run: Run,
                                                               network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    for command in ("read", "ack", "status"):
        result = run(command, "../../admin", "--keystore", ks_path)
        assert result.code == 2
        assert result.err.startswith("error: malformed: envelope id")


# --- the almanac: stated at init, confirmed at enrolment, used by send and search -----------


NINE_LANGUAGES = ("nl", "fr", "de", "en", "es", "pt", "it", "lb", "pl")
BOGOTA = ("--language", "nl", "--language", "ES", "--posting", "co-bogota",
          "--cover", "co/drugs", "--cover", "CO/money-laundering", "--cover", "co/drugs")


def test_officer_init_puts_languages_posting_and_coverage_in_the_request(
        run: Run, network: Network) -> None:
    _, request_path, result = _init_officer(run, network, almanac=BOGOTA)
    assert result.code == 0, result.err
    almanac = verify_enrolment_request(request_path.read_bytes()).almanac
    assert almanac == Almanac.create(languages=["nl", "es"], posting="co-bogota",
                                     coverage=["co/drugs", "co/money-laundering"])
    assert "languages: nl, es" in result.out
    assert "posting:   co-bogota" in result.out
    assert "covers:    co/drugs, co/money-laundering" in result.out


def test_officer_init_as_json_shows_the_almanac(run: Run, network: Network) -> None:
    ks = network.root / "j.keystore"
    result = run("officer", "init", "--id", "nl/jdevries", "--name", "Jan", "--role", "lo",
                 "--node-url", network.node_url, "--ca", network.ca, "--keystore", ks,
                 "--request-out", network.root / "j.request", "--cover", "pe/drugs", "--json")
    answer = json.loads(result.out)
    assert (answer["languages"], answer["posting"], answer["coverage"]) == ([], "",
                                                                             ["pe/drugs"])


@pytest.mark.parametrize(("option", "message"), [
    (("--cover", "co-drugs"), "--cover 'co-drugs' must be COUNTRY/AREA, e.g. co/drugs"),
    (("--cover", "co/drug"), "unknown crime area 'drug' in --cover 'co/drug'; one of: drugs,"),
    (("--cover", "uk/fraud"), "(use 'gb')"),
    (("--language", "xx"), "language 'xx' is not an ISO 639-1 code"),
    (("--posting", "Bogota"), "posting 'bogota' must be <country> or <country>-<city>"),
    (tuple(x for code in NINE_LANGUAGES for x in ("--language", code)),
     "at most 8 languages, got 9"),
])
def test_officer_init_refuses_a_bad_almanac_entry_before_making_keys(
        run: Run, network: Network, option: tuple[str, ...], message: str) -> None:
    ks_path, request, result = _init_officer(run, network, almanac=option)
    assert result.code == 2
    assert result.err.startswith("error: malformed: ") and message in result.err
    assert result.err.count("\n") == 1
    assert not ks_path.exists() and not request.exists()


def test_enrol_officer_shows_the_almanac_for_confirmation_and_signs_it_into_the_card(
        run: Run, network: Network) -> None:
    _, request, _ = _init_officer(run, network, almanac=BOGOTA)
    result = run("admin", "enrol-officer", request, "--config", network.config)
    assert result.code == 0, result.err
    assert "  languages: nl, es\n" in result.out
    assert "  posting:   co-bogota\n" in result.out
    assert "  covers:    co/drugs, co/money-laundering\n" in result.out
    assert "what the card says the officer covers" in result.out
    [(*_, raw)] = _cards(network.database)
    card = verify_card(raw, node_public=_node_public(network), node_id="nl", now=None)
    assert [str(c) for c in card.almanac.coverage] == ["co/drugs", "co/money-laundering"]

    again = run("admin", "enrol-officer", request, "--config", network.config, "--json")
    answer = json.loads(again.out)
    assert (answer["languages"], answer["posting"], answer["coverage"]) == (
        ["nl", "es"], "co-bogota", ["co/drugs", "co/money-laundering"])


def test_send_to_a_coverage_of_an_unknown_country_fails_before_the_network(
        run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    result = run(*SEND, "--keystore", ks_path, "--to", "coverage:xx/drugs")
    assert result.code == 2
    assert result.err == ("error: not_found: no officer covers xx/drugs: country 'xx' is not "
                          "an ISO 3166-1 alpha-2 country code\n")


@pytest.mark.parametrize(("to", "message"), [
    ("coverage:co/drug", "error: malformed: unknown crime area 'drug' in --to "
                         "'coverage:co/drug'; one of: drugs, "),
    ("coverage:co", "error: malformed: --to 'coverage:co' must be coverage:COUNTRY/AREA"),
])
def test_send_to_a_malformed_coverage_fails_before_the_network(
        run: Run, network: Network, to: str, message: str) -> None:
    ks_path, _, _ = _init_officer(run, network)
    result = run(*SEND, "--keystore", ks_path, "--to", "be/apeeters", "--to", to)
    assert result.code == 2
    assert result.err.startswith(message) and result.err.count("\n") == 1


def test_send_to_a_coverage_gets_as_far_as_the_network(run: Run, network: Network) -> None:
    """Resolution needs the directory: a well-formed coverage goes to the node for it."""
    ks_path, _, _ = _init_officer(run, network)
    result = run(*SEND, "--keystore", ks_path, "--to", "coverage:co/drugs", "--to",
                 "be/apeeters", "--share-with", "nl,be")
    assert result.code == 2
    assert result.err.startswith("error: unavailable: cannot reach node")


def test_send_refuses_a_named_recipient_outside_share_with_even_beside_a_coverage(
        run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    result = run(*SEND, "--keystore", ks_path, "--to", "coverage:co/drugs", "--to",
                 "de-nw/kschmidt", "--share-with", "nl,be")
    assert result.code == 2
    assert result.err.startswith("error: policy.share_with: not sending to de-nw/kschmidt")


def test_directory_search_checks_its_criteria_before_the_network(
        run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    uk = run("directory", "search", "--country", "uk", "--keystore", ks_path)
    assert uk.code == 2
    assert uk.err == ("error: malformed: country 'uk' is not an ISO 3166-1 alpha-2 country "
                      "code (use 'gb')\n")
    language = run("directory", "search", "--language", "xx", "--keystore", ks_path)
    assert language.code == 2 and "not an ISO 639-1 code" in language.err
    area = run("directory", "search", "--area", "drug", "--keystore", ks_path)
    assert area.code == 2 and "Invalid value for '--area'" in area.err
    ok = run("directory", "search", "--country", "CO", "--area", "drugs", "--keystore", ks_path)
    assert ok.code == 2 and ok.err.startswith("error: unavailable: cannot reach node")


@pytest.mark.parametrize("args", [
    ("directory",), ("directory", "--json"), ("directory", "search", "--country", "co"),
    ("directory", "search", "--json"),
])
def test_directory_with_and_without_search_reaches_the_node(
        run: Run, network: Network, args: tuple[str, ...],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ks_path, _, _ = _init_officer(run, network)
    monkeypatch.setenv("LIAISON_KEYSTORE", str(ks_path))
    result = run(*args)
    assert result.code == 2 and result.err.startswith("error: unavailable: cannot reach node")


def test_options_given_to_directory_count_for_search(run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    result = run("directory", "--keystore", ks_path, "search", "--area", "drugs")
    assert result.code == 2 and result.err.startswith("error: unavailable: cannot reach node")
    # The control case: without the inherited --keystore, search looks for the default file.
    default = run("directory", "search", "--area", "drugs")
    assert default.code == 2 and "no keystore at officer.keystore" in default.err
