"""The ``forgepilot`` command line: thin command modules over the services, one error handler.

Every ``ForgePilotError`` becomes one line on stderr (what went wrong, then what to do) and its documented exit
code (``forgepilot.errors.EXIT_CODES``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.markup import escape

from forgepilot import __version__
from forgepilot.cli import (
    assist,
    chat,
    complete,
    dataset,
    doctor,
    eval,
    gate,
    index,
    keys,
    lsp,
    models,
    monitor,
    registry,
    rollout,
    serve,
    train,
)
from forgepilot.cli._common import err
from forgepilot.errors import EXIT_CODES, ForgePilotError

_EPILOG = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())

app = typer.Typer(
    name="forgepilot",
    help="Run, measure, adapt and ship your own AI coding assistant.",
    epilog=_EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(complete.complete)
app.command()(chat.chat)
app.command()(doctor.doctor)
app.command()(index.index)
app.command()(index.search)
app.command()(index.symbols)
app.command()(assist.suggest)
app.command()(assist.task)
app.command()(serve.serve)
app.command()(lsp.lsp)
app.command()(monitor.monitor)
app.command()(monitor.audit)
app.command()(train.train)
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(dataset.app, name="dataset")
app.add_typer(eval.app, name="eval")
app.add_typer(gate.app, name="gate")
app.add_typer(registry.app, name="registry")
app.add_typer(rollout.app, name="rollout")
app.command()(gate.promote)


def _version(value: bool) -> None:
    if value:
        print(f"forgepilot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details, llama.cpp's included, to stderr."),
) -> None:
    """Run, measure, adapt and ship your own AI coding assistant."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # llama.cpp warns about tuning details (cache layouts, unused context) that are not the user's problem.
    logging.getLogger("forgepilot.llama_cpp").setLevel(logging.DEBUG if verbose else logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        # Without standalone mode the command returns the code of a ``typer.Exit`` instead of exiting.
        result = command.main(args=argv, prog_name="forgepilot", standalone_mode=False)
    except ForgePilotError as exc:
        # soft_wrap: the error stays one line whatever the terminal width.
        err.print(f"[red]error:[/] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        return 130
    except typer.TyperException as exc:  # usage errors and bad parameters from the (vendored) click layer
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        return int(exc.exit_code)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
