"""Schemathesis hooks for tests/schemathesis.sh: the rules of the Taskgate API
that no OpenAPI schema can state, and nothing else.

The document states every rule a schema can (bounds, lengths, patterns,
enums); schemathesis then checks both directions (`--checks all`): data the
document allows must not be refused for its shape, and data it forbids must
be refused. A few rules cannot be written as a schema (docs/fuzzing.md lists
them with the reason). A failure caused only by one of them is dropped here,
recognised by the server's own problem+json answer (the field and its
message), so a refusal for any other reason still fails the run.
"""

import json
import os
import unicodedata

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import MissingHeaderNotRejected, RejectedPositiveData

# tus bodies are raw bytes, sent as schemathesis sends application/octet-stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

# (field, start of the message) of the 422s that only inexpressible rules give.
INEXPRESSIBLE_FIELD_ERRORS = [
    # The password policy beyond its length: the username, breached lists.
    ("password", "must not contain the username"),
    ("password", "is too easy to guess"),
    # Sizes in bytes of UTF-8 or of compact JSON, and nesting depth.
    ("code", "must be at most"),
    ("profile", "must be at most"),
    ("profile", "must be nested at most"),
    # A cursor is opaque: only the API's own `next` values are cursors.
    ("cursor", "is not a cursor this API returned"),
    # RFC 5321/5322 addresses as the server's parser reads them.
    ("email", "must be a valid e-mail address"),
    # Rules about a project's state: who its members and admins are.
    ("owner", "must be an admin of the project"),
    ("assignee", "must be a member of the project"),
    # Time zones: the set of names is the zone database's, not a pattern.
    ("tz", "must be an IANA time zone"),
]


def _problem(response):
    try:
        return json.loads(response.content)
    except (ValueError, TypeError):
        return {}


def _only_inexpressible(problem, case):
    errors = problem.get("errors") or []
    return bool(errors) and all(_inexpressible(error, case) for error in errors)


def _inexpressible(error, case):
    field, message = error.get("field"), error.get("message", "")
    if any(field == f and message.startswith(m) for f, m in INEXPRESSIBLE_FIELD_ERRORS):
        return True
    # A password length counted after normalisation (see below).
    return (
        field == "password"
        and message.startswith(("must be at least", "must be at most"))
        and _password_length_changes_under_nfkc(case)
    )


def _password_length_changes_under_nfkc(case):
    """The policy counts characters after NFKC normalisation (so that
    look-alike forms are one password); a schema counts them as sent."""
    body = case.body if isinstance(case.body, dict) else {}
    password = body.get("password")
    if not isinstance(password, str):
        return False
    return len(unicodedata.normalize("NFKC", password)) != len(password)


def _dropped(reason):
    """Notes why a failure was excused, one line each, in the file named by
    $TASKGATE_FUZZ_EXCUSED (tests/schemathesis.sh prints a tally)."""
    path = os.environ.get("TASKGATE_FUZZ_EXCUSED")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(reason + "\n")
    return False


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keep every failure except those only an inexpressible rule explains."""
    if isinstance(failure, RejectedPositiveData):
        # The whole body over TASKGATE_MAX_BODY_BYTES: a size in bytes.
        if response.status_code == 413:
            return _dropped("413 body over TASKGATE_MAX_BODY_BYTES")
        problem = _problem(response)
        # An If-Match of the right form naming another version than the
        # item's current one: the item's state, not the request's shape.
        if response.status_code == 412 and problem.get("type", "").endswith(":precondition-failed"):
            return _dropped("412 If-Match names another version")
        # An Idempotency-Key the fuzzer already sent with another body: the
        # key's history, not the request's shape (a fuzzer repeats values).
        if response.status_code == 422 and problem.get("type", "").endswith(
            ":idempotency-key-reused"
        ):
            return _dropped("422 Idempotency-Key used before with another request")
        # tus: a chunk whose bytes do not match its Upload-Checksum (a
        # digest of the body, not a shape).
        if response.status_code == 460:
            return _dropped("460 the bytes do not match Upload-Checksum")
        # tus metadata: values are base64 of UTF-8, and the file name and
        # type have rules of their own (a grammar over decoded bytes).
        detail = problem.get("detail", "")
        if response.status_code == 400 and detail.startswith(
            ("Upload-Metadata:", "the filename ", "the filetype ")
        ):
            return _dropped("400 " + detail[:40])
        # 422 for bodies; 400 `invalid-query` for item listings' parameters.
        if response.status_code in (400, 422) and _only_inexpressible(problem, case):
            fields = sorted(
                f"{e.get('field')}: {e.get('message', '')[:40]}" for e in problem["errors"]
            )
            return _dropped(f"{response.status_code} " + "; ".join(fields))
        return True
    # tus answers a missing or other Tus-Resumable with 412, its own status
    # for it, before looking at anything else (schemathesis expects 400-like
    # ones, for a bad Tus-Resumable and for whatever else is wrong).
    if (
        isinstance(failure, (AcceptedNegativeData, MissingHeaderNotRejected))
        and response.status_code == 412
        and "Tus-Resumable" in _problem(response).get("detail", "")
        and (case.headers or {}).get("Tus-Resumable") != "1.0.0"
    ):
        return _dropped("412 Tus-Resumable missing or not 1.0.0 (tus's own status)")
    if isinstance(failure, AcceptedNegativeData):
        # HTTP lets any request carry headers an operation does not name
        # (proxies add them); only the named ones are checked.
        if "in header - object with unexpected properties" in failure.message:
            return _dropped("accepted: a header the operation does not name")
    # A schema-violating body that is also over TASKGATE_MAX_BODY_BYTES: the
    # server refused it, with 413 before reading it (schemathesis counts only
    # 4xx it expects as refusals).
    if isinstance(failure, AcceptedNegativeData) and response.status_code == 413:
        return _dropped("413 invalid body also over TASKGATE_MAX_BODY_BYTES")
    # A password under 15 characters as sent that NFKC normalisation makes
    # long enough is rightly accepted, though the schema's minLength refuses it.
    if response.status_code < 300 and _password_length_changes_under_nfkc(case):
        return _dropped("accepted: password long enough after NFKC")
    return True
