"""The error types every layer raises, and the exit codes of DESIGN.md §3 they map to."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_CREDENTIALS = 4


class SpotplanError(Exception):
    """An error with a one-line message for the user and the exit code it maps to."""

    exit_code = EXIT_RUNTIME
    # Set by a migrate step that failed before it sent anything that changes the cloud, so its
    # rollback knows the change it was about to make never started.
    sent_nothing = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InputError(SpotplanError):
    """Bad user input: a file, a row, a field or a flag. Exit code 2."""

    exit_code = EXIT_USAGE


class CloudError(SpotplanError):
    """A provider call failed at runtime. Exit code 1."""

    exit_code = EXIT_RUNTIME


class CredentialsError(SpotplanError):
    """Missing or rejected credentials, or a permission denied. Exit code 4."""

    exit_code = EXIT_CREDENTIALS


class MissingExtraError(SpotplanError):
    """A cloud SDK extra is not installed; the message carries the pip command that fixes it."""

    exit_code = EXIT_USAGE


def require_extra(module: str, extra: str) -> None:
    """Raise MissingExtraError with an install hint when `module` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise MissingExtraError(
            f"{module} is not installed", hint=f"pip install 'spotplan[{extra}]'"
        )
