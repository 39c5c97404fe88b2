"""Exceptions raised by the library; the CLI turns them into messages without a traceback."""

from __future__ import annotations


class CurateError(Exception):
    """A user-facing problem: the message says what is wrong and how to fix it."""


class WorkspaceBusy(CurateError):
    pass


class WorkspaceNotWritable(CurateError):
    """The workspace's folder cannot be written (read-only storage, no permission, a file in the way)."""


class InputError(CurateError):
    """Bad input data; names the source, line and field."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        super().__init__(message)
        self.source = source
        self.line = line


class QueryError(CurateError):
    pass


INGEST_FIX = (
    "Fix the row, map the field names with --field (e.g. --field chosen=response_a), force the "
    "format with --format hh|explicit|conversational, or pass --skip-invalid to ingest the good rows "
    "and record the bad ones in the `rejects` table."
)

READ_ONLY_FIX = (
    "curate sql is read-only by default, and this query has a statement of type {kind}, which would change "
    "something. Re-run with --write if that is what you want."
)
