"""One exception tree for filetwin.

Every error carries a message meant for a person and the exit code the CLI
uses for it (1 operation failed, 2 bad usage, 3 no daemon).
Lower layers raise these (``raise ... from`` the OS or library error); the CLI
and the API server translate them at the boundary and nowhere else.
"""

from __future__ import annotations


class FiletwinError(Exception):
    """Base of every error filetwin raises on purpose."""

    exit_code: int = 1
    #: HTTP status the API answers with for this error.
    http_status: int = 500
    #: Whether trying the same operation again may succeed.
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(FiletwinError):
    """Bad input: an option out of range, a path that cannot be protected."""

    exit_code = 2
    http_status = 400


class NotFound(FiletwinError):
    """An entry, version or object that does not exist."""

    exit_code = 1
    http_status = 404


class Conflict(FiletwinError):
    """The request clashes with the current state (already protected, ...)."""

    exit_code = 1
    http_status = 409


class DaemonUnavailable(FiletwinError):
    """No daemon answers on the socket where one is needed."""

    exit_code = 3
    http_status = 503


class PermissionDenied(FiletwinError):
    """The caller is not allowed to use the API or touch the path."""

    exit_code = 1
    http_status = 403


class RepositoryError(FiletwinError):
    """The repository could not be read or written."""

    retryable = True


class ObjectNotFound(RepositoryError, NotFound):
    """A named object is absent from the backend."""

    retryable = False
    http_status = 404


class RepositoryRefused(RepositoryError):
    """The repository's store refuses us for a reason retrying cannot fix: its
    credentials were refused, access is denied, its bucket does not exist. The
    user must change the configuration (the message says what)."""

    retryable = False


class CorruptObject(RepositoryError):
    """An object exists but its content is not what its name promises."""

    retryable = False


class SourceError(FiletwinError):
    """The protected file itself failed: reading (or writing) the user's file hit
    an I/O error. Only this kind of error may lead to healing the file; an
    error of filetwin's own storage (RepositoryError, StateError) never does.
    ``errno`` keeps the OS error number (EIO must stay visible)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class StateError(FiletwinError):
    """The state directory (management table, event log, journals) could not be
    written: a full disk, an I/O error, too many open files."""

    http_status = 507
    retryable = True


class WrongPassphrase(FiletwinError):
    """The passphrase does not open the repository key (or the key file's wrapped keys
    are damaged: the two cannot be told apart). Nothing was changed."""

    exit_code = 1
    http_status = 403


class JobFailed(FiletwinError):
    """A job failed for a reason of its own (its worker died, an unexpected OS
    error in it): running it again may succeed."""

    retryable = True


class JobTimeout(JobFailed):
    """A job ran past its deadline and its worker was killed."""

    retryable = True


class UnsafePath(FiletwinError):
    """A symlink or ``..`` stands where restore would write."""

    http_status = 400


class RestoreError(FiletwinError):
    """A version could not be rebuilt exactly (hash mismatch, missing chunk)."""


# Used by the API server and the client to carry errors over the socket.
ERROR_TYPES: dict[str, type[FiletwinError]] = {
    cls.__name__: cls
    for cls in (
        FiletwinError,
        UsageError,
        NotFound,
        Conflict,
        DaemonUnavailable,
        PermissionDenied,
        RepositoryError,
        ObjectNotFound,
        RepositoryRefused,
        CorruptObject,
        SourceError,
        StateError,
        WrongPassphrase,
        JobFailed,
        JobTimeout,
        UnsafePath,
        RestoreError,
    )
}


def error_from(type_name: object, message: str, errno: int | None = None) -> FiletwinError:
    """The exception an error answer (from a worker or the daemon) names."""
    cls = ERROR_TYPES.get(str(type_name), FiletwinError)
    if issubclass(cls, SourceError):
        return cls(message, errno)
    return cls(message)
