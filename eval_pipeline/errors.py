"""Errors the front doors map to answers: bad input (CLI exit 2, HTTP 4xx) versus failures (exit 1, 5xx)."""
from __future__ import annotations


class EvalPipelineError(Exception):
    """Base of the project's errors; `code` is the machine-readable error code the front doors answer with."""

    code = "internal_error"


class InvalidInput(EvalPipelineError):
    """The caller's input is wrong; `field` names what to fix."""

    code = "invalid_request"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(EvalPipelineError):
    """No object of `kind` (e.g. "run") has the id `ident`; `detail` adds why, when known."""

    code = "not_found"

    def __init__(self, kind: str, ident: str, detail: str = ""):
        super().__init__(f"{kind} not found: {ident}" + (f" ({detail})" if detail else ""))
        self.kind = kind
        self.ident = ident


class Conflict(EvalPipelineError):
    """The request is valid but the object's state does not allow it (cancel a finished run)."""

    code = "conflict"


class SourceAuthError(EvalPipelineError):
    """The source refused the caller's credentials (or needs some that were not given)."""

    code = "source_unauthorized"


class SourceUnavailable(EvalPipelineError):
    """The source could not be reached or failed on its side; retrying may help."""

    code = "source_unavailable"


class MalformedFile(EvalPipelineError):
    """One source file could not be read as an lm-eval output; names the file (and line when known)."""

    code = "malformed_file"

    def __init__(self, path: str, reason: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.reason = reason
        self.line = line


INPUT_ERRORS = (InvalidInput, NotFound, Conflict, SourceAuthError)
