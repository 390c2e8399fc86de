"""What every command shares: output formats, where renderings go (and a reader leaving stdout
early), and turning errors into one clear line on stderr with the exit code of DESIGN.md §3 (never a
traceback without -v, library logs included)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from spotplan.errors import EXIT_RUNTIME, InputError, SpotplanError


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    markdown = "markdown"
    json = "json"


OutputOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        "-o",
        help="Rendering: table, csv, markdown or json. Default: from the --out suffix (.csv, .md, .json), else table.",
        case_sensitive=False,
        show_default=False,
    ),
]
_SUFFIX_FORMATS = {".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".json": "json"}


@dataclass(frozen=True)
class Rendering:
    """What every command renders its result as: the format, and whether it goes to a terminal."""

    format: OutputFormat
    terminal: bool

    @property
    def color(self) -> bool:
        """Colour only for a table on a terminal, and never under NO_COLOR."""
        return self.terminal and self.format == OutputFormat.table and not os.environ.get("NO_COLOR")


def rendering(output: OutputFormat | None, out: Path | None) -> Rendering:
    """An explicit -o wins; else the --out file's suffix; else the table. A file is never a terminal."""
    fmt = OutputFormat.table
    if output is not None:
        fmt = output
    elif out is not None and Path(out).suffix.lower() in _SUFFIX_FORMATS:
        fmt = OutputFormat(_SUFFIX_FORMATS[Path(out).suffix.lower()])
    # FORCE_COLOR is the convention (rich's too) for "treat stdout as a terminal".
    terminal = out is None and (sys.stdout.isatty() or bool(os.environ.get("FORCE_COLOR")))
    return Rendering(fmt, terminal=terminal)


OutPathOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Write the rendering to this file instead of stdout.", dir_okay=False),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show debug logs and full tracebacks.")
]


class State:
    verbose: bool = False


def group_verbose(verbose: bool) -> None:
    """A command group's own -v (`spotplan prices -v show`): adds to the root's, never clears it."""
    State.verbose = State.verbose or verbose


def is_verbose(local: bool = False) -> bool:
    return local or State.verbose or os.environ.get("SPOTPLAN_DEBUG") == "1"


def stderr_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Print `error: message` on stderr; return the Exit to raise."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def silence_stdout() -> None:
    """After a broken pipe: stdout goes to /dev/null, so later writes and the interpreter's final
    flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _configure_logging(verbose: bool) -> None:
    """Library loggers (gcsfs, botocore, urllib3) stay quiet without -v: Python's last-resort
    handler would print their warnings, tracebacks included, on stderr. With -v they go to stderr."""
    import logging

    root = logging.getLogger()
    if root.handlers:
        return  # an embedding program (or pytest) configured logging: leave it alone
    if verbose:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")
    else:
        root.addHandler(logging.NullHandler())


@contextmanager
def handle_errors(verbose: bool = False) -> Iterator[None]:
    """Turn SpotplanError into one line and its exit code; anything unexpected into exit 1."""
    _configure_logging(is_verbose(verbose))
    try:
        yield
    except typer.Exit:
        raise
    except SpotplanError as exc:
        if is_verbose(verbose):
            import traceback

            traceback.print_exc()
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except BrokenPipeError:
        # The reader stopped reading (`| head`): nothing is wrong with the work. Quiet, like other
        # Unix tools.
        silence_stdout()
        raise typer.Exit(0) from None
    except Exception as exc:
        if is_verbose(verbose):
            raise
        raise fail(f"{type(exc).__name__}: {exc} (run with -v for the traceback)", EXIT_RUNTIME) from None


def refuse_overwriting(inputs: Iterable[Path], **outputs: Path | None) -> None:
    """Usage error when an output file (by option name) is one of the inputs, or two outputs are one
    file: writing it would destroy what is being read, or one rendering the other."""
    seen: dict[Path, str] = {}
    read = {p.resolve() for p in inputs if Path(p).is_file()}
    for option, path in outputs.items():
        if path is None:
            continue
        flag = "--" + option.replace("_", "-")
        where = Path(path).resolve()
        if where in read:
            raise InputError(f"{flag} {path} is one of the input files: refusing to overwrite it")
        if where in seen and not _is_device(Path(path)):
            raise InputError(f"{flag} and {seen[where]} both name {path}: give them different files")
        seen[where] = flag


def _is_device(path: Path) -> bool:
    return path.exists() and not path.is_file()


def emit(text: str, out: Path | None) -> None:
    """Data to stdout, or to `--out` (the file is written atomically)."""
    if out is None:
        try:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader left (`| head -1`): the rest of the command still runs, so a --plan-out,
            # a --png or a webhook is not lost, and migrate/watch keep their exit codes.
            silence_stdout()
        return
    out = Path(out)
    body = text if text.endswith("\n") else text + "\n"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if out.exists() and not out.is_file():
            # /dev/null, a FIFO, /dev/stdout: write through; renaming over them would replace the device.
            with out.open("w", encoding="utf-8") as fh:
                fh.write(body)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(body, encoding="utf-8")
            os.replace(tmp, out)
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        raise InputError(f"{out}: cannot write: {exc.strerror or exc}") from None
    sys.stderr.write(f"wrote {out}\n")
