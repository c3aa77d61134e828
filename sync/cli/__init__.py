"""The ``segsync`` command line (typer + rich). Thin: parse input, load config, call ``sync``.

Every command module under ``sync.cli`` exposes ``register(app)``. User errors
(:class:`mapping.errors.SegsyncError`) print one clear message per problem on stderr and exit
with the error's code (2 for bad config or input); they never show a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mapping.errors import SegsyncError

app = typer.Typer(
    name="segsync",
    help="Keep dynamic customer segments alive inside HubSpot and Klaviyo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True, soft_wrap=True)


class State:
    config_path: Path = Path("config.toml")


state = State()


@app.callback()
def _root(
    config: Annotated[
        Path,
        typer.Option(
            "--config", "-c", envvar="SEGSYNC_CONFIG", help="the TOML configuration file"
        ),
    ] = Path("config.toml"),
) -> None:
    state.config_path = config


def _register_all() -> None:
    from sync.cli import config_cmds, engine_cmds, pull_cmds, realtime_cmds, run_cmds, sandbox_cmds, sync_cmds

    for module in (config_cmds, engine_cmds, sandbox_cmds, pull_cmds, sync_cmds, run_cmds, realtime_cmds):
        module.register(app)


def report(error: SegsyncError) -> int:
    problems = getattr(error, "problems", None)
    lines = [str(p) for p in problems] if problems else [str(error) or type(error).__name__]
    for line in lines:
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True)
    return error.exit_code


def main(argv: list[str] | None = None) -> int:
    _register_all()
    try:
        code = app(args=argv, standalone_mode=False)  # typer.Exit(n) returns n here
    except SegsyncError as e:
        return report(e)
    except SystemExit as e:  # typer/click exit codes (usage errors are 2)
        return int(e.code or 0)
    except typer.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as e:  # click usage errors arrive as ClickException subclasses
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show(file=sys.stderr)
            return e.exit_code
        if isinstance(e, click.exceptions.Abort):
            return 1
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
