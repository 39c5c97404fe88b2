"""Settings: dataclass fields that carry their own help, default, paper source and command-line spelling.

A config dataclass (a trainer's RMConfig, the sampling GenerateParams) is the one place a knob is defined:

    lr: float = setting(9e-6, "Learning rate.", paper="FRFT paper, appendix: reward-model training")

From it come the options of `curate train rm` and of `python -m curate.train.rm` (click_options), the keys of
`curate run`'s TOML sections with their type checks (toml_settings, coerce), and the record of what ran
(asdict). TRL builds its script parsers from its config dataclasses the same way (TrlParser).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any

import click

from .errors import CurateError

WORKSPACE_HELP = "Workspace folder (default: the group's -w, else env CURATE_WORKSPACE, else ./workspace)."
QUIET_HELP = "No progress bars or summaries on stderr."


def setting(default: Any = MISSING, help: str = "", *, paper: str | None = None, flag: str | None = None,
            short: str | None = None, choices: tuple[str, ...] | None = None, cli: bool = True, toml: bool = True,
            required: bool = False, metavar: str | None = None, default_factory: Any = MISSING) -> Any:
    """A dataclass field with what the command line and the TOML config need to know about it.

    paper: where the default comes from (shown in --help); flag/short: the option's spelling (default
    --field-name); cli/toml: False where a command or `curate run` sets the value itself (paths, seeds).
    """
    meta = {"help": help, "paper": paper, "flag": flag, "short": short, "choices": choices, "cli": cli,
            "toml": toml, "required": required, "metavar": metavar}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def workspace_setting() -> Any:
    """The workspace field of a config: -w/--workspace, set by `curate run` itself."""
    return setting(None, WORKSPACE_HELP, short="-w", toml=False)


def quiet_setting() -> Any:
    """The quiet field of a config: -q/--quiet."""
    return setting(False, QUIET_HELP, flag="--quiet", short="-q", toml=False)


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    kind: type  # int, float, str, bool, list or tuple (Optional unwrapped)
    optional: bool  # None is a valid value
    default: Any
    meta: dict

    @property
    def help(self) -> str:
        text = self.meta.get("help", "")
        return f"{text} [{self.meta['paper']}]" if self.meta.get("paper") else text

    @property
    def flag(self) -> str:
        return self.meta.get("flag") or "--" + self.name.replace("_", "-")


@functools.cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    """The fields of a config dataclass, with their annotations resolved."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional = _unwrap(hints[f.name])
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        out.append(Setting(f.name, kind, optional, default, dict(f.metadata)))
    return tuple(out)


def _unwrap(hint) -> tuple[type, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return _unwrap(rest[0])[0], True
    origin = typing.get_origin(hint)
    if origin is not None:
        return origin, False
    return hint, False


def toml_settings(cls: type) -> dict[str, Setting]:
    """{key: Setting} of the fields a `curate run` TOML section may set."""
    return {s.name: s for s in settings_of(cls) if s.meta.get("toml", True)}


def toml_values(obj: Any) -> dict:
    """The TOML-settable values of a config instance (what a run's config hash and diff see)."""
    return {name: getattr(obj, name) for name in toml_settings(type(obj))}


def coerce(s: Setting, value: Any, where: str) -> Any:
    """Check a TOML value against the field's type; `where` names the file, line, section and key."""
    if s.kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CurateError(f"{where} must be a number, not {value!r}.")
        value = float(value)
    elif s.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise CurateError(f"{where} must be a whole number, not {value!r}.")
    elif s.kind in (list, tuple) and not isinstance(value, list):
        raise CurateError(f"{where} must be a list, e.g. [\"a\", \"b\"], not {value!r}.")
    elif s.kind is str and not isinstance(value, str):
        raise CurateError(f"{where} must be a string (in quotes), not {value!r}.")
    elif s.kind is bool and not isinstance(value, bool):
        raise CurateError(f"{where} must be true or false, not {value!r}.")
    choices = s.meta.get("choices")
    if choices and value not in choices:
        raise CurateError(f"{where} must be one of {', '.join(map(repr, choices))}, not {value!r}.")
    return tuple(value) if s.kind is tuple else value


# -- the command line -----------------------------------------------------------------------------------
def click_options(cls: type, *, skip: tuple[str, ...] = ()) -> Callable:
    """A decorator adding one click option per CLI field of `cls` (in field order)."""
    chosen = [s for s in settings_of(cls) if s.meta.get("cli", True) and s.name not in skip]

    def decorate(f):
        for s in reversed(chosen):
            f = _option(s)(f)
        return f

    return decorate


def _option(s: Setting):
    names = [s.flag] + ([s.meta["short"]] if s.meta.get("short") else [])
    kw: dict[str, Any] = {"help": s.help, "metavar": s.meta.get("metavar")}
    default = None if s.default is MISSING else s.default
    if s.meta.get("required"):
        kw["required"] = True
    elif default is not None:
        kw.update(default=default, show_default=True)
    if s.name == "workspace":
        kw.update(default=None, type=click.Path(file_okay=False), callback=group_workspace, help=WORKSPACE_HELP,
                  show_default=False)
        return click.option(*names, s.name, **kw)
    if s.kind is bool:
        if "/" not in s.flag and s.meta.get("flag"):  # a plain switch, e.g. --force
            return click.option(*names, s.name, is_flag=True, **kw)
        if "/" not in s.flag:
            names[0] = f"{s.flag}/--no-{s.flag[2:]}"
        return click.option(*names, s.name, **kw)
    if s.kind is tuple:
        item = type(default[0]) if default else float
        return click.option(*names, s.name, type=item, nargs=len(default or (0, 0)), **kw)
    if s.meta.get("choices"):
        kw["type"] = click.Choice(list(s.meta["choices"]))
    else:
        kw["type"] = {int: int, float: float}.get(s.kind, str)
    return click.option(*names, s.name, **kw)


def group_workspace(ctx: click.Context, param, value):
    """-w on a command wins; else the group's `curate -w WS ...`; else None (env CURATE_WORKSPACE, ./workspace)."""
    if value is not None:
        return value
    root = ctx.find_root()
    return root.params.get("workspace") if root is not ctx else None


def build(cls: type, values: dict) -> Any:
    """An instance of `cls` from click's parsed values (keys that are not fields are left out)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


class FriendlyErrors:
    """Mixed into click commands and groups: a CurateError is one line (no traceback), Ctrl-C a short note."""

    def invoke(self, ctx):
        from .faults import StorageError, step, storage_errno, storage_error
        from .integrity import damage_hint

        try:
            with step(_step_name(self, ctx)):
                try:
                    return super().invoke(ctx)
                except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                    raise  # click's own control flow and messages
                except Exception as e:
                    # a reader meeting a damaged table file (DuckDB's "No magic bytes found..."): which table, and
                    # `curate check`
                    if not isinstance(e, StorageError) and (hint := damage_hint(e)) is not None:
                        raise CurateError(hint) from None
                    if isinstance(e, CurateError) or storage_errno(e) is None:
                        raise
                    raise storage_error(e, None) from None  # a write no choke point wraps (a library's own save)
        except CurateError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted: the workspace keeps its last committed state; rerun the command to finish.",
                       err=True)
            sys.exit(130)


def _step_name(command: click.Command, ctx: click.Context) -> str:
    """`curate ingest`, `curate train rm`: the command path the user typed, for messages about the running step
    (a group's invoke runs before its subcommand's context exists, so the words are resolved here)."""
    words = [*getattr(ctx, "_protected_args", []), *ctx.args]
    name = [ctx.command_path]
    for w in words:
        if not isinstance(command, click.Group) or w.startswith("-"):
            break
        command = command.get_command(ctx, w)
        if command is None:
            break
        name.append(w)
    return " ".join(name)


class Command(FriendlyErrors, click.Command):
    pass


def script(cls: type, run: Callable[[Any], str | None], prog: str, doc: str) -> Callable[[list[str] | None], int]:
    """main(argv) -> exit code for `python -m MODULE`: a click command whose options are `cls`'s CLI fields,
    calling run(cls(...)) and printing what it returns (a path) on stdout."""

    def command(**values):
        shown = run(build(cls, values))
        if shown is not None:
            click.echo(shown)

    def main(argv: list[str] | None = None) -> int:
        # built when the script runs, not when the module is imported (the curate CLI imports it too)
        cli = click.command(cls=Command, help=doc, context_settings={"help_option_names": ["-h", "--help"]})(
            click_options(cls)(command))
        try:
            cli.main(args=argv, prog_name=prog, standalone_mode=True)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return 0

    return main
