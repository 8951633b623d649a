"""`liaison directory` and `liaison directory search`: who is on the network, who covers what.

`liaison directory` lists every officer card the network CA vouches for, as it always has;
`liaison directory search --country co --area drugs --language es` is the almanac: the
officers whose cards say they cover Colombia for drugs and work in Spanish. Both read the
same CA-verified directory the officer's machine seals with, so what a search finds is
exactly what `liaison send --to coverage:co/drugs` reaches. The almanac is signed into each
card by the officer's home node (``core.almanac``); docs/almanac.md lists the crime areas.

Options given to `directory` before `search` (`liaison directory --keystore k search ...`)
count for the search too, so both orders work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from liaison_net.cli import officer_view as view
from liaison_net.cli.commands import Group
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import (
    emit_json,
    keystore_options,
    load_keystore,
    node_session,
    now_ms,
    run,
    warn_directory,
)
from liaison_net.client.directory import Directory
from liaison_net.core.almanac import CrimeArea, check_country, check_language
from liaison_net.core.identity import OfficerCard


def _fetch(keystore_path: Path, passphrase_file: Path | None) -> Directory:
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> Directory:
        async with node_session(ks, keystore_path) as node:
            return await node.directory(now=cli_clock().host_now())

    directory = run(go())
    warn_directory(directory)
    return directory


def _inherited(ctx: click.Context, name: str, value: Any) -> Any:
    """``value`` of option ``name``, or the parent group's if only the group was given it."""
    if (ctx.parent is not None and name in ctx.parent.params
            and ctx.get_parameter_source(name) is ParameterSource.DEFAULT):
        return ctx.parent.params[name]
    return value


@click.group("directory", invoke_without_command=True, cls=Group)
@click.option("--json", "as_json", is_flag=True, help="Print the directory as JSON.")
@keystore_options
@click.pass_context
def directory(ctx: click.Context, as_json: bool, keystore_path: Path,
              passphrase_file: Path | None) -> None:
    """The officers you can write to: every card the network CA vouches for.

    `liaison directory search` finds who covers a country and crime area.
    """
    if ctx.invoked_subcommand is not None:
        return
    found = _fetch(keystore_path, passphrase_file)
    if as_json:
        emit_json(view.directory_json(found, now=now_ms()))
    else:
        view.print_directory(found, now=now_ms())


@directory.command("search")
@click.option("--country", metavar="CODE",
              help="Covers this country (ISO 3166-1 alpha-2, e.g. co).")
@click.option("--area", type=click.Choice([a.value for a in CrimeArea]),
              help="Covers this crime area (with --country: that country for this area).")
@click.option("--language", metavar="CODE", help="Works in this language (ISO 639-1, e.g. es).")
@click.option("--json", "as_json", is_flag=True, help="Print the officers found as JSON.")
@keystore_options
@click.pass_context
def search_cmd(ctx: click.Context, country: str | None, area: str | None,
               language: str | None, as_json: bool, keystore_path: Path,
               passphrase_file: Path | None) -> None:
    """Who covers it: officers whose card covers --country for --area, speaking --language.

    Every criterion given must hold. Only cards valid now are searched: these are the
    officers `liaison send --to coverage:COUNTRY/AREA` reaches.
    """
    country = check_country(country.strip().lower()) if country is not None else None
    language = check_language(language.strip().lower()) if language is not None else None
    crime_area = CrimeArea(area) if area is not None else None
    found = _fetch(_inherited(ctx, "keystore_path", keystore_path),
                   _inherited(ctx, "passphrase_file", passphrase_file))
    cards = found.search(now=now_ms(), country=country, area=crime_area, language=language)
    criteria = {"country": country, "area": area, "language": language}
    if _inherited(ctx, "as_json", as_json):
        emit_json({"criteria": criteria, "officers": [_card_json(c) for c in cards],
                    "warnings": found.warnings})
    else:
        print_search(cards, criteria)


def _card_json(card: OfficerCard) -> dict[str, Any]:
    return {"officer": card.officer, "name": card.name, "role": card.role, "node": card.node,
            "valid_until": card.valid_until, **card.almanac.to_json()}


def print_search(cards: list[OfficerCard], criteria: dict[str, str | None]) -> None:
    console = view._console()
    asked = _describe(criteria)
    if not cards:
        console.print(f"no officer {asked}")
        return
    table = view._table("officer", "name", "role", "posting", "languages", "coverage")
    for card in cards:
        a = card.almanac
        table.add_row(view.safe(card.officer), view.safe(card.name), view.safe(card.role),
                      a.posting or "-", ", ".join(a.languages) or "-",
                      ", ".join(map(str, a.coverage)) or "-")
    console.print(table)
    console.print(f"{len(cards)} found: {asked}")


def _describe(criteria: dict[str, str | None]) -> str:
    """``covers co/drugs, speaks es``: what was searched for, in words."""
    country, area, language = criteria["country"], criteria["area"], criteria["language"]
    parts = []
    if country and area:
        parts.append(f"covers {country}/{area}")
    elif country or area:
        parts.append(f"covers {country or area}")
    if language:
        parts.append(f"speaks {language}")
    return ", ".join(parts) or "with a valid card"
