"""The errors minialbert raises for input it cannot use, so that a caller (and the `minialbert` command line) can tell
them from bugs: a `BadInputError` means the value it names is wrong and says what to pass instead; anything else
that escapes a command is a bug, shown with its traceback."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


class BadInputError(ValueError):
    """Input minialbert cannot use (a value, a folder, a file, a checkpoint), found before any work: the message names
    it and the fix. A ValueError, so code that caught ValueError before still does."""


class MissingExtraError(BadInputError, ImportError):
    """An optional extra the request needs is not installed; the message gives the `pip install` line."""


class FolderWriteError(OSError):
    """Writing an output folder failed for a reason outside minialbert (a full disk, a read-only file system); the
    message names the folder, the cause and what was left there. `errno` is the cause's; `folder_write_error` makes
    one that is also the OSError subclass its errno maps to (PermissionError for EACCES, ...)."""


@cache
def _folder_write_error_class(kind: type[OSError]) -> type[FolderWriteError]:
    return FolderWriteError if kind is OSError else type(f"FolderWrite{kind.__name__}", (FolderWriteError, kind), {})


def folder_write_error(errno: int | None, message: str) -> FolderWriteError:
    """`FolderWriteError(errno, message)`, of the OSError subclass `OSError(errno, ...)` would be."""
    return _folder_write_error_class(type(OSError(errno, message)))(errno, message)


@contextmanager
def as_bad_input(context: str = "") -> Iterator[None]:
    """Report a ValueError raised in the block by code that validates user values (transformers' argument and config
    checks, the config classes uploaded with a student, which cannot import this module) as a `BadInputError`,
    prefixed with `context`."""
    try:
        yield
    except BadInputError:
        raise
    except ValueError as error:
        raise BadInputError(f"{context}{error}") from error
