"""Ratings from real users: a masked, local SQLite store, optional Hub sync, and the report built from it.

    store = FeedbackStore(default_db_path(), masker=PIIMasker())
    store.record(Rating(liked=False, question=raw_question, answer=shown_markdown, session_id=sid, reason="wrong"))

    python -m gpt2chat.feedback report [--out livrables]          # livrables/feedback.md + plots
    python -m gpt2chat.feedback export [--out DIR]                # a Hugging Face `datasets` dataset on disk
    python -m gpt2chat.feedback delete --before 2026-12-01        # erasure requests (also --session ID)

Every free-text field (question, reason, answer, cited URLs) goes through the engine's masker before it is
written, so raw messages never reach the database; the rows keep only the masked text and the entity types that
were removed. The database lives at --db, else $GPT2CHAT_FEEDBACK_DB, else ``data/feedback/feedback.sqlite3``
(gitignored). A database that cannot be opened or written (corrupt, locked, read-only) costs one log line per
problem and the rating: never the chat. With $GPT2CHAT_FEEDBACK_REPO and a Hugging Face token a snapshot is
pushed to that private dataset repo every few minutes (a Space loses its disk on restart).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sqlite3
import sys
import threading
from contextlib import closing  # sqlite3's own context manager commits but never closes
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from gpt2chat import settings
from gpt2chat.chat.followups import question_type

log = logging.getLogger(__name__)

DB_ENV = "GPT2CHAT_FEEDBACK_DB"
ENABLED_ENV = "GPT2CHAT_FEEDBACK"  # "0", "off", "false" or "no" turns collection off
REPO_ENV = "GPT2CHAT_FEEDBACK_REPO"
DEFAULT_DB = settings.FEEDBACK_DB
# What the user saw: the model's text, the extractive summary of the NIH passage, or no answer. The values of
# gpt2chat.chat.engine's ChatReply.answer_kind (not imported: the commands here must not start TensorFlow).
SHOWN = ("model", "extract", "none")
REASONS = ("wrong", "off-topic", "unclear", "unsafe")  # offered in the UI; any other short text is accepted too
NOTICE = ("👍/👎 under an answer saves a rating with your question **with personal details removed**, the answer "
          "and its sources, to improve the chatbot.")
# Long enough for any answer the app renders (320 new tokens plus sources); longer API input is cut, not refused.
LIMITS = {"question": 2000, "answer": 8000, "reason": 500, "session_id": 100, "model_id": 300}
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


def default_db_path(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(DB_ENV) or DEFAULT_DB).expanduser()


def collection_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """On unless $GPT2CHAT_FEEDBACK says otherwise."""
    return env.get(ENABLED_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


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
    shown: str = "model"
    model_id: str = ""
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.shown not in SHOWN:
            raise ValueError(f"shown must be one of {', '.join(SHOWN)}, not {self.shown!r}")
        if not str(self.session_id).strip():
            raise ValueError("a rating needs a session id (erasure requests are made by session)")


class FeedbackStore:
    """Ratings in SQLite (WAL: readers never block the writer). One short connection per operation, so any
    number of threads and processes can share the file; SQLite's busy timeout serialises their writes."""

    def __init__(self, path: str | os.PathLike, masker=None, *, timeout: float = 5.0, create: bool = True,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.path = Path(path).expanduser()
        self._masker = masker  # anything with .mask(text) -> result with .text and .findings, e.g. a PIIMasker
        self._timeout = timeout
        self._clock = clock
        self._reported: set[str] = set()
        self._report_lock = threading.Lock()
        # A missing database is created by the first rating, not by opening: an app nobody rates (tests, demos)
        # leaves no file behind. An existing one is checked now, so a corrupt file is reported at start-up.
        self._exists = self.path.is_file()
        self._create_lock = threading.Lock()
        self.hub_sync = None  # the CommitScheduler pushing snapshots, when start_hub_sync set one up
        self.available = self._open(create) if self._exists or not create else True

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
        result = self._masker.mask(str(text or ""))
        return result.text[:limit], {finding.entity_type for finding in result.findings}

    def record(self, rating: Rating) -> bool:
        """Mask and store one rating; False (and one log line per kind of failure) when it could not be saved."""
        if self._masker is None:
            raise RuntimeError("this FeedbackStore has no masker: it cannot record ratings")
        if not self._exists:
            with self._create_lock:
                if not self._exists:
                    self._exists = self._open(create=True)  # a failure (one log line) is retried next time
                    if not self._exists:
                        return False
        if not self.available:
            return False
        question, question_types = self._mask(rating.question, LIMITS["question"])
        reason, reason_types = self._mask(rating.reason, LIMITS["reason"])
        answer, _ = self._mask(rating.answer, LIMITS["answer"])
        urls = [self._mask(url, LIMITS["question"])[0] for url in rating.urls]
        row = {
            "created_at": self._clock().astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
            "session_id": str(rating.session_id)[: LIMITS["session_id"]],
            "liked": int(bool(rating.liked)),
            "reason": reason,
            "question": question,
            "question_type": question_type(question),
            "masked_types": json.dumps(sorted(question_types | reason_types)),
            "answer": answer,
            "urls": json.dumps(urls),
            "sources": json.dumps([str(s) for s in rating.sources]),
            "shown": rating.shown,
            "model_id": str(rating.model_id)[: LIMITS["model_id"]],
            "settings": json.dumps(dict(rating.settings), sort_keys=True, default=str),
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


def start_hub_sync(store: FeedbackStore, env: Mapping[str, str] = os.environ, token: str | None = None,
                   scheduler_class=None, every_minutes: float = 5):
    """Push snapshots of ``store`` to the private dataset repo $GPT2CHAT_FEEDBACK_REPO; None (and one log line
    saying why) when there is no repo, no token or no Hub. The caller keeps the scheduler alive."""
    repo_id = (env.get(REPO_ENV) or "").strip()
    if not repo_id:
        log.info("feedback is stored locally at %s (set %s and a token to sync it to the Hub)", store.path, REPO_ENV)
        return None
    if token is None:
        from huggingface_hub import get_token

        token = get_token()  # $HF_TOKEN, or the token saved by `hf auth login`
    if not token:
        log.warning("%s=%s is set but there is no Hugging Face token: feedback stays local at %s",
                    REPO_ENV, repo_id, store.path)
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


def open_app_store(masker, env: Mapping[str, str] = os.environ) -> FeedbackStore | None:
    """The app's store (None when $GPT2CHAT_FEEDBACK turns collection off), synced to the Hub when configured."""
    if not collection_enabled(env):
        log.info("feedback collection is off (%s=%s)", ENABLED_ENV, env.get(ENABLED_ENV))
        return None
    store = FeedbackStore(default_db_path(env), masker)
    store.hub_sync = start_hub_sync(store, env)
    return store


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
    common.add_argument("--db", help=f"the ratings database (default: ${DB_ENV} or "
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

    path = Path(args.db).expanduser() if args.db else default_db_path()
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
    if os.environ.get(REPO_ENV):
        print(f"the Hub copy in {os.environ[REPO_ENV]} follows at the app's next sync (its history is squashed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
