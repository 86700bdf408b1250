"""Ratings from real users: a masked, local SQLite store, optional Hub sync, and the report built from it.

    store = FeedbackStore(settings.feedback_settings().db_path, masker=PIIMasker())
    store.record(Rating(liked=False, question=raw_question, answer=shown_markdown, session_id=sid, reason="wrong"))

    python -m gpt2chat.feedback report [--out livrables]          # livrables/feedback.md + plots
    python -m gpt2chat.feedback export [--out DIR]                # a Hugging Face `datasets` dataset on disk
    python -m gpt2chat.feedback delete --before 2026-12-01        # erasure requests (also --session ID)

Every text field (question, reason, answer, cited URLs and sources) is cut to its limit and then goes through the
engine's masker before it is written, so raw messages never reach the database; the rows keep only the masked text
and the entity types that were removed. The app rates by answer reference (``AnswerLedger``: the server's own copy
of what it showed), under an opaque session token (``session_token``) and per-client limits (``RateLimit``); the
database refuses ratings past its size cap. The database lives at --db, else $GPT2CHAT_FEEDBACK_DB, else ``data/feedback/feedback.sqlite3``
(gitignored). A database that cannot be opened or written (corrupt, locked, read-only) costs one log line per
problem and the rating: never the chat. With $GPT2CHAT_FEEDBACK_REPO and a Hugging Face token a snapshot is
pushed to that private dataset repo every few minutes (a Space loses its disk on restart).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import sys
import threading
import time
from contextlib import closing  # sqlite3's own context manager commits but never closes
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from gpt2chat import settings
from gpt2chat.chat.followups import question_type
from gpt2chat.chat.kinds import AnswerKind

log = logging.getLogger(__name__)

DEFAULT_DB = settings.FEEDBACK_DB
# What the user saw: the model's text, the extractive summary of the NIH passage, or no answer.
SHOWN = tuple(AnswerKind)
REASONS = ("wrong", "off-topic", "unclear", "unsafe")  # offered in the UI; any other short text is accepted too
NOTICE = ("👍/👎 under an answer saves a rating with your question **with personal details removed**, the answer "
          "and its sources, to improve the chatbot.")
# Long enough for any answer the app renders (320 new tokens plus sources). Every text is cut to its limit *before*
# it is masked: masking a 950 KB field first took the queue's workers for seconds per rating (issue 23).
LIMITS = {"question": 2000, "answer": 8000, "reason": 500, "session_id": 100, "model_id": 300}
# The database stops taking ratings past this size (the default holds about 100,000 ratings); $GPT2CHAT_FEEDBACK_MAX_MB.
DEFAULT_MAX_BYTES = 200 << 20
# An unusable store is tried again at most this often, so a folder made writable later is used without a restart.
RETRY_S = 30.0
MASKED_REMEMBERED = 256  # server-issued texts whose masked form is kept (FeedbackStore._mask_server_text)
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,          -- ISO 8601, UTC, seconds
    session_id TEXT NOT NULL,
    liked INTEGER NOT NULL,            -- 1 thumbs up, 0 thumbs down
    reason TEXT NOT NULL,              -- masked
    question TEXT NOT NULL,            -- masked
    question_type TEXT NOT NULL,       -- gpt2chat.chat.followups.question_type of the masked question
    masked_types TEXT NOT NULL,        -- JSON list of entity types removed from the question and reason
    answer TEXT NOT NULL,              -- as shown (Markdown), masked
    urls TEXT NOT NULL,                -- JSON list of cited URLs
    sources TEXT NOT NULL,             -- JSON list of NIH source names, first = the grounding passage
    shown TEXT NOT NULL,               -- model | extract | none
    model_id TEXT NOT NULL,
    settings TEXT NOT NULL             -- JSON object: temperature, max_new_tokens, grounded...
);
CREATE INDEX IF NOT EXISTS ratings_created ON ratings(created_at);
CREATE INDEX IF NOT EXISTS ratings_session ON ratings(session_id);
"""
_JSON_COLUMNS = ("masked_types", "urls", "sources", "settings")


@dataclasses.dataclass(frozen=True)
class Rating:
    """One thumbs up or down, as the UI or the API hands it over: text fields are still raw here."""

    liked: bool
    question: str
    answer: str
    session_id: str
    reason: str = ""
    urls: Sequence[str] = ()
    sources: Sequence[str] = ()
    shown: str = AnswerKind.MODEL
    model_id: str = ""
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.shown not in SHOWN:
            raise ValueError(f"shown must be one of {', '.join(SHOWN)}, not {self.shown!r}")
        if not str(self.session_id).strip():
            raise ValueError("a rating needs a session id (erasure requests are made by session)")


def storable(text: Any, limit: int) -> str:
    """``text`` as a str cut to ``limit`` characters at a space (a value cut in half could escape the masker),
    without lone surrogates, which SQLite cannot encode (a UnicodeEncodeError with the character in the log)."""
    text = str(text or "")
    if len(text) > limit:
        cut = text.rfind(" ", 0, limit + 1)
        text = text[: cut if cut > 0 else limit]
    return text.encode("utf-8", "replace").decode("utf-8")


class FeedbackStore:
    """Ratings in SQLite (WAL: readers never block the writer). One short connection per operation, so any
    number of threads and processes can share the file; SQLite's busy timeout serialises their writes."""

    def __init__(self, path: str | os.PathLike, masker=None, *, timeout: float = 5.0, create: bool = True,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 max_bytes: int = DEFAULT_MAX_BYTES, retry_s: float = RETRY_S):
        self.path = Path(path).expanduser()
        self._masker = masker  # anything with .mask(text) -> result with .text and .findings, e.g. a PIIMasker
        self._timeout = timeout
        self._clock = clock
        self.max_bytes = max_bytes
        self._retry_s = retry_s
        self._failed_at: float | None = None  # when opening last failed; None while the store is fine
        self._reported: set[str] = set()
        self._report_lock = threading.Lock()
        # A missing database is created by the first rating, not by opening: an app nobody rates (tests, demos)
        # leaves no file behind. An existing one is checked now, so a corrupt file is reported at start-up.
        self._exists = self.path.is_file()
        self._create_lock = threading.Lock()
        self._masked: collections.OrderedDict[tuple[str, int], tuple[str, set[str]]] = collections.OrderedDict()
        self._masked_lock = threading.Lock()
        self.hub_sync = None  # the CommitScheduler pushing snapshots, when start_hub_sync set one up
        self.available = self._open(create) if self._exists or not create else True
        if not self.available:
            self._failed_at = time.monotonic()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        connection.row_factory = sqlite3.Row
        return connection

    def _open(self, create: bool) -> bool:
        if not create and not self.path.is_file():
            self._problem("missing", f"no feedback database at {self.path}")
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                if create:
                    connection.executescript(_SCHEMA)
                    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                connection.execute("SELECT count(*) FROM ratings").fetchone()
            return True
        except (sqlite3.Error, OSError) as error:
            self._problem("open", f"feedback database at {self.path} is unusable ({error}); ratings are not saved")
            return False

    def _problem(self, kind: str, message: str) -> None:
        """Log each kind of problem once: a broken disk must not flood the log with one line per click."""
        with self._report_lock:
            if kind in self._reported:
                return
            self._reported.add(kind)
        log.warning(message)

    def _mask(self, text: str, limit: int) -> tuple[str, set[str]]:
        result = self._masker.mask(storable(text, limit))
        return result.text, {finding.entity_type for finding in result.findings}

    def _mask_server_text(self, text: str, limit: int) -> tuple[str, set[str]]:
        """``_mask`` of text the server issued (the masked question, the answer, its URLs and sources), remembered
        for the last MASKED_REMEMBERED texts: each is masked once however often its answer is rated. A rating
        masked some ten texts, 0.2 s each on a loaded machine, under the lock every question's masking also takes;
        a flood of ratings of one answer slowed everybody's answers (issue 23). Client text (the reason) is never
        kept."""
        key = (text, limit)
        with self._masked_lock:
            if key in self._masked:
                self._masked.move_to_end(key)
                return self._masked[key]
        masked = self._mask(text, limit)
        with self._masked_lock:
            self._masked[key] = masked
            while len(self._masked) > MASKED_REMEMBERED:
                self._masked.popitem(last=False)
        return masked

    def _usable(self) -> bool:
        """Whether a rating can be written now; an unusable store is opened again every ``retry_s`` seconds."""
        if self._exists and self.available:
            return True
        with self._create_lock:
            if self._exists and self.available:
                return True
            if self._failed_at is not None and time.monotonic() - self._failed_at < self._retry_s:
                return False
            self._exists = self.available = self._open(create=True)  # a failure logs one line, once
            if not self.available:
                self._failed_at = time.monotonic()
                return False
            if self._failed_at is not None:
                with self._report_lock:
                    self._reported.clear()
                log.warning("feedback database at %s is usable again: ratings are saved", self.path)
            self._failed_at = None
            return True

    def size_bytes(self) -> int:
        """The database and its write-ahead log on disk."""
        total = 0
        for path in self.path.parent.glob(self.path.name + "*"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # another thread's last connection closed and SQLite removed its log
                continue
        return total

    def is_full(self) -> bool:
        return self._exists and self.size_bytes() >= self.max_bytes

    def record(self, rating: Rating) -> bool:
        """Mask and store one rating; False (and one log line per kind of failure) when it could not be saved."""
        if self._masker is None:
            raise RuntimeError("this FeedbackStore has no masker: it cannot record ratings")
        if not self._usable():
            return False
        if self.is_full():
            self._problem("full", f"feedback database at {self.path} reached its size cap of "
                                  f"{self.max_bytes / 2**20:.1f} MB ({settings.FEEDBACK_MAX_MB_ENV}): ratings are not "
                                  "saved")
            return False
        question, question_types = self._mask_server_text(rating.question, LIMITS["question"])
        reason, reason_types = self._mask(rating.reason, LIMITS["reason"])
        answer, _ = self._mask_server_text(rating.answer, LIMITS["answer"])
        urls = [self._mask_server_text(url, LIMITS["question"])[0] for url in list(rating.urls)[:10]]
        sources = [self._mask_server_text(source, LIMITS["model_id"])[0] for source in list(rating.sources)[:10]]
        row = {
            "created_at": self._clock().astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
            "session_id": storable(rating.session_id, LIMITS["session_id"]),
            "liked": int(bool(rating.liked)),
            "reason": reason,
            "question": question,
            "question_type": question_type(question),
            "masked_types": json.dumps(sorted(question_types | reason_types)),
            "answer": answer,
            "urls": json.dumps(urls),
            "sources": json.dumps(sources),
            "shown": rating.shown,
            "model_id": storable(rating.model_id, LIMITS["model_id"]),
            "settings": storable(json.dumps(dict(rating.settings), sort_keys=True, default=str), LIMITS["reason"]),
        }
        try:
            with closing(self._connect()) as connection:
                connection.execute(f"INSERT INTO ratings ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                   list(row.values()))
            return True
        except sqlite3.Error as error:  # locked past the timeout, corrupted since opening, disk full...
            self._problem(f"write:{error}", f"could not save a rating to {self.path} ({error}); the chat goes on")
            return False

    def rows(self) -> list[dict]:
        """Every rating, oldest first, JSON columns decoded."""
        if not self.available or not self._exists:
            return []
        with closing(self._connect()) as connection:
            rows = [dict(row) for row in connection.execute("SELECT * FROM ratings ORDER BY created_at, id")]
        for row in rows:
            row["liked"] = bool(row["liked"])
            for column in _JSON_COLUMNS:
                row[column] = json.loads(row[column])
        return rows

    def delete(self, before: dt.datetime | None = None, session_id: str | None = None) -> int:
        """Erase ratings made before a time and/or in one session; the deleted bytes are overwritten and the
        write-ahead log truncated, so they do not linger in the file. Returns how many rows went."""
        if before is None and session_id is None:
            raise ValueError("say which ratings to delete: before a date and/or one session")
        clauses, values = [], []
        if before is not None:
            clauses.append("created_at < ?")
            values.append(before.astimezone(dt.timezone.utc).isoformat(timespec="seconds"))
        if session_id is not None:
            clauses.append("session_id = ?")
            values.append(session_id)
        with closing(self._connect()) as connection:
            connection.execute("PRAGMA secure_delete=ON")
            deleted = connection.execute(f"DELETE FROM ratings WHERE {' AND '.join(clauses)}", values).rowcount
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def snapshot(self, destination: str | os.PathLike) -> Path | None:
        """A consistent copy of the live database (SQLite's online backup), written atomically; None while
        there is no database yet."""
        if not self.path.is_file():
            return None
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = destination.with_name(destination.name + ".tmp")
        with closing(self._connect()) as source, closing(sqlite3.connect(staging)) as copy:
            source.backup(copy)
        os.replace(staging, destination)
        return destination


# --- Hub sync ----------------------------------------------------------------------------------------------------

def snapshot_scheduler_class():
    """``huggingface_hub.CommitScheduler`` that copies the database before each push: the scheduler uploads
    files as they are, and a live WAL database file is not a consistent copy on its own."""
    from huggingface_hub import CommitScheduler

    class SnapshotScheduler(CommitScheduler):
        def __init__(self, *, snapshot: Callable[[Path], Any], **kwargs):
            self._snapshot = snapshot
            super().__init__(**kwargs)

        def push_to_hub(self):
            with self.lock:
                self._snapshot(self.folder_path / SNAPSHOT_NAME)
            return super().push_to_hub()

    return SnapshotScheduler


SNAPSHOT_NAME = "feedback.sqlite3"


def start_hub_sync(store: FeedbackStore, repo_id: str, token: str | None = None,
                   scheduler_class=None, every_minutes: float = 5):
    """Push snapshots of ``store`` to the private dataset repo ``repo_id`` ($GPT2CHAT_FEEDBACK_REPO); None (and one
    log line saying why) when there is no repo, no token or no Hub. The caller keeps the scheduler alive."""
    if not repo_id:
        if store.available:
            log.info("feedback is stored locally at %s (set %s and a token to sync it to the Hub)", store.path,
                     settings.FEEDBACK_REPO_ENV)
        else:
            log.warning("feedback cannot be stored at %s for now: tried again every %.0f s", store.path,
                        store._retry_s)
        return None
    if token is None:
        from huggingface_hub import get_token

        token = get_token()  # $HF_TOKEN, or the token saved by `hf auth login`
    if not token:
        log.warning("%s=%s is set but there is no Hugging Face token: feedback stays local at %s",
                    settings.FEEDBACK_REPO_ENV, repo_id, store.path)
        return None
    try:
        return (scheduler_class or snapshot_scheduler_class())(
            snapshot=store.snapshot, repo_id=repo_id, repo_type="dataset", private=True, token=token,
            folder_path=store.path.parent / "hub", allow_patterns=[SNAPSHOT_NAME], every=every_minutes,
            # One commit in the repo's history: a row erased locally must not survive in an older commit.
            squash_history=True)
    except Exception as error:  # offline, bad token, no rights: the chat must not depend on the Hub
        log.warning("cannot sync feedback to the Hub dataset %s (%s): it stays local at %s",
                    repo_id, str(error).splitlines()[0] if str(error) else type(error).__name__, store.path)
        return None


def open_app_store(masker, config: settings.FeedbackSettings) -> FeedbackStore | None:
    """The app's store (None when ``config`` turns collection off), synced to the Hub when configured."""
    if not config.enabled:
        log.info("feedback collection is off (%s)", settings.FEEDBACK_ENV)
        return None
    max_bytes = DEFAULT_MAX_BYTES if config.max_mb is None else int(config.max_mb * 2**20)
    store = FeedbackStore(config.db_path, masker, max_bytes=max_bytes)
    store.hub_sync = start_hub_sync(store, config.hub_repo)
    return store


# --- answer references, opaque sessions and per-client limits ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class IssuedAnswer:
    """What the server showed, kept in memory so a rating stores the server's copy, never client text."""

    question: str  # as the engine masked it
    answer: str  # the rendered Markdown answer
    shown: str
    urls: tuple[str, ...]
    sources: tuple[str, ...]
    model_id: str
    settings: Mapping[str, Any]


class AnswerLedger:
    """The last ``capacity`` answers the app gave, by an unguessable reference that the reply carries.

    ``/rate`` and the 👍/👎 buttons send the reference; the rating is made from the server's copy, so nothing a
    client writes except the reason reaches the database, and sources are the ones the engine cited. Memory is
    bounded: each entry is cut to LIMITS (about 10 KB at most), 2,000 of them about 20 MB."""

    # Not \b: a token may end with "-" (one in 64), and "-<" has no word boundary, which had left those answers
    # unratable.
    REFERENCE = re.compile(r"(?<![A-Za-z0-9_-])ref-[A-Za-z0-9_-]{16}(?![A-Za-z0-9_-])")

    def __init__(self, capacity: int = 2000):
        self.capacity = capacity
        self._answers: collections.OrderedDict[str, IssuedAnswer] = collections.OrderedDict()
        self._lock = threading.Lock()

    def issue(self, answer: IssuedAnswer) -> str:
        reference = "ref-" + secrets.token_urlsafe(12)
        answer = dataclasses.replace(answer, question=storable(answer.question, LIMITS["question"]),
                                     answer=storable(answer.answer, LIMITS["answer"]))
        with self._lock:
            self._answers[reference] = answer
            while len(self._answers) > self.capacity:
                self._answers.popitem(last=False)
        return reference

    def get(self, reference: Any) -> IssuedAnswer | None:
        if not isinstance(reference, str) or not self.REFERENCE.fullmatch(reference.strip()):
            return None
        with self._lock:
            return self._answers.get(reference.strip())

    def find(self, text: str) -> IssuedAnswer | None:
        """The answer whose reference a rendered reply carries."""
        match = self.REFERENCE.search(text or "")
        return self.get(match.group(0)) if match else None


_SESSION_KEY = secrets.token_bytes(32)  # per process: tokens cannot be linked across restarts or to the client


def session_token(client_session: Any) -> str:
    """An opaque server token for a client's session id (Gradio's session hash is chosen by the client)."""
    digest = hmac.new(_SESSION_KEY, str(client_session or "anonymous").encode("utf-8", "replace"), hashlib.sha256)
    return "s-" + digest.hexdigest()[:20]


class RateLimit:
    """At most ``limit`` events per ``window_s`` seconds per key (a sliding window); keys are bounded in number."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.max_keys, self._clock = limit, window_s, max_keys, clock
        self._events: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            events = self._events.pop(key, None) or collections.deque()
            while events and now - events[0] >= self.window_s:
                events.popleft()
            allowed = len(events) < self.limit
            if allowed:
                events.append(now)
            self._events[key] = events
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
            return allowed


# --- command line ------------------------------------------------------------------------------------------------

def _parse_date(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.feedback", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help=f"the ratings database (default: ${settings.FEEDBACK_DB_ENV} or "
                                     f"{DEFAULT_DB})")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", parents=[common], help="write feedback.md and its plots")
    report.add_argument("--out", default=str(settings.LIVRABLES_DIR), help="directory (default: %(default)s)")
    report.add_argument("--worst", type=int, default=10, help="worst-rated answers to list (default: %(default)s)")
    export = commands.add_parser("export", parents=[common], help="save the ratings as a `datasets` dataset")
    export.add_argument("--out", help="directory (default: export/ beside the database)")
    delete = commands.add_parser("delete", parents=[common], help="erase ratings (erasure requests)")
    delete.add_argument("--before", type=_parse_date, help="ratings made before this date (UTC unless given)")
    delete.add_argument("--session", help="ratings of this session id")
    args = parser.parse_args(argv)

    config = settings.feedback_settings()
    path = Path(args.db).expanduser() if args.db else config.db_path
    store = FeedbackStore(path, create=False)
    if args.command == "report":
        from gpt2chat.serving.feedback_report import ReportConfig, write_report

        out = write_report(store.rows(), args.out, ReportConfig(worst=args.worst))
        print(f"wrote {out} from {len(store.rows()):,} ratings")
        return 0
    if not store.available:
        print(f"error: no usable feedback database at {path}", file=sys.stderr)
        return 2
    if args.command == "export":
        from gpt2chat.serving.feedback_report import export_dataset

        try:
            out = export_dataset(store.rows(), args.out or path.parent / "export")
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"exported {len(store.rows()):,} ratings to {out}")
        return 0
    if args.before is None and args.session is None:
        delete.error("give --before DATE and/or --session ID")
    deleted = store.delete(before=args.before, session_id=args.session)
    print(f"deleted {deleted:,} ratings from {path}")
    if config.hub_repo:
        print(f"the Hub copy in {config.hub_repo} follows at the app's next sync (its history is squashed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
