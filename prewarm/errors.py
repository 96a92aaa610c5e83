"""The one error tree of prewarm.

    PrewarmError                 anything prewarm raises on purpose
    ├── InputError               the user's input is wrong: shown as one line, exit 2 / HTTP 4xx
    │   ├── ManifestError        a job manifest (file, line, field)
    │   ├── TraceError           a trace file that cannot be read at all
    │   ├── PlanFileError        a plan JSON that is corrupt or hostile
    │   ├── ConfigError          settings from a file, the environment or the command line
    │   └── OutsideRoots         a job names a path the site does not allow (HTTP 403)
    └── ServiceError             something prewarm depends on is not there (Redis, a mount)

A user's mistake must never surface as a traceback: the CLI catches `InputError`
and prints `str(error)`, which always names where the problem is. Wrapping keeps
the cause (`raise ManifestError(...) from exc`) so developers still see it with -v.
"""

from __future__ import annotations


class PrewarmError(Exception):
    """Base of every error prewarm raises deliberately."""


class InputError(PrewarmError):
    """Bad input from the user: a file, a line or a field is wrong.

    `where` is what the user must look at (a path, `path:line`, a field name);
    it leads the one-line message.
    """

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Survive pickling: trace files are imported in worker processes."""
        return (type(self), (self.where, self.message))


class ManifestError(InputError):
    """A job manifest that is not valid."""


class TraceError(InputError):
    """A trace file or folder that cannot be read at all (bad lines are only counted)."""


class PlanFileError(InputError):
    """A plan JSON that is malformed or asks for something outside the rules."""


class ConfigError(InputError):
    """Settings that are malformed or inconsistent."""


class OutsideRoots(InputError):
    """A job names a path outside the site's allowed roots: the job is refused, nothing is looked at.

    (A symlink found to lead out of the roots while a job is planned or warmed is not
    this error: it is an `outside-roots` finding, and the rest of the job goes on.)
    """


class ServiceError(PrewarmError):
    """A service prewarm needs is unreachable or misbehaving (Redis, the gateway mount)."""
