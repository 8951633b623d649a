"""click's Command and Group as every `liaison` command uses them.

click stops at the first missing required option, so an officer who left out four learns of
them in four tries. ``Command`` lets click parse as usual and, when it reports one missing
parameter, names every one that is missing in one message (and exit code 2, as click's).
A ``Group`` makes its sub-commands and sub-groups of these classes; a ``LazyGroup`` imports
a sub-command's module only when that sub-command is used. Only click is imported here:
`liaison --help` and `liaison admin --help` stay light.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import click


class Command(click.Command):
    """A command that reports all missing required parameters at once."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes the list it is handed
        try:
            return super().parse_args(ctx, args)
        except click.MissingParameter:
            missing = missing_parameters(self, ctx, given)
            if len(missing) < 2:
                raise
            raise click.UsageError(f"Missing {'; '.join(_grouped(missing))}.", ctx) from None


def missing_parameters(command: click.Command, ctx: click.Context,
                       args: Sequence[str]) -> list[click.Parameter]:
    """The required parameters ``args`` leave without a value (none from the command line,
    the environment or a default), in the order --help lists them."""
    opts, _, _ = command.make_parser(ctx).parse_args(args=list(args))
    missing = []
    for param in command.get_params(ctx):
        if not param.required:
            continue
        value, _ = param.consume_value(ctx, opts)
        if param.value_is_missing(value):
            missing.append(param)
    return missing


def _label(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return max(param.opts, key=len)  # the long name: what the help shows first
    return param.human_readable_name


def _grouped(missing: list[click.Parameter]) -> list[str]:
    arguments = [f"'{_label(p)}'" for p in missing if not isinstance(p, click.Option)]
    options = [f"'{_label(p)}'" for p in missing if isinstance(p, click.Option)]
    parts = []
    if arguments:
        parts.append(("argument " if len(arguments) == 1 else "arguments ")
                     + ", ".join(arguments))
    if options:
        parts.append(("option " if len(options) == 1 else "options ") + ", ".join(options))
    return parts


class Group(click.Group):
    """A group whose commands and sub-groups report missing parameters all at once."""

    command_class = Command
    group_class = type  # sub-groups made with @group.group() are Groups too


#: A lazy group's table: command name -> ("module:attribute", its one-line help). An
#: attribute whose name starts with "_" is a factory, called with the command's name.
LazyTable = dict[str, tuple[str, str]]


def load_lazy(table: LazyTable, name: str) -> click.Command:
    """Import and return the command ``name`` of ``table``."""
    module_name, attribute = table[name][0].split(":")
    target: Any = getattr(importlib.import_module(module_name), attribute)
    command = target(name) if attribute.startswith("_") else target
    if not isinstance(command, click.Command):
        raise TypeError(f"{table[name][0]} is not a click command")
    return command


class LazyGroup(Group):
    """A group that lists its commands from a table and imports one only on use.

    Importing every command's module costs what the heaviest needs (aiohttp, the store,
    cryptography) before `--help` prints a line, and every run pays it; the table names
    each command with its one-line help, and a command's module is imported only when the
    command is resolved: to run it, or to show its own ``--help``. Commands defined in
    the group's own module (``@group.command``) are listed as usual. Tests hold each table
    to the commands' own docstrings (tests/test_cli_startup.py).
    """

    def __init__(self, *args: Any, lazy: LazyTable | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: LazyTable = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(load_lazy(self.lazy, cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own layout, with the help from the table: nothing is imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            # Shortened by click's own rule: a stand-in command carrying the table's text.
            shown = loaded if loaded is not None else click.Command(name, help=self.lazy[name][1])
            rows.append((name, shown.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
