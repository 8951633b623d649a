"""click's Command and Group as every `liaison` command uses them.

click stops at the first missing required option, so an officer who left out four learns of
them in four tries. ``Command`` lets click parse as usual and, when it reports one missing
parameter, names every one that is missing in one message (and exit code 2, as click's).
A ``Group`` makes its sub-commands and sub-groups of these classes. Only click is imported
here: `liaison --help` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence

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
