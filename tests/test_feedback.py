"""The feedback store: masking before storage, concurrency, broken databases, Hub sync set-up, the commands."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import os
import sqlite3
import types

import pytest

from gpt2chat import settings
from gpt2chat.serving import feedback
from gpt2chat.serving.feedback import FeedbackStore, Rating

PII_QUESTION = "I'm John Smith, SSN 536-22-8741, email john.smith@example.com. How is my glaucoma treated?"
PII_VALUES = ("John", "Smith", "536-22-8741", "john.smith@example.com", "415-555-0123")
ANSWER = ("Glaucoma is treated with eye drops, laser or surgery.\n\n---\n**Sources:** "
          "[Glaucoma](https://nei.nih.gov/health/glaucoma/glaucoma_facts) (NIHSeniorHealth)\n\n_Not advice._")


def rating(**overrides) -> Rating:
    values = dict(liked=False, question="What is glaucoma?", answer=ANSWER, session_id="session-a",
                  reason="wrong", urls=["https://nei.nih.gov/health/glaucoma/glaucoma_facts"],
                  sources=["NIHSeniorHealth"], shown="model",
                  model_id="models/default", settings={"temperature": 0.7, "max_new_tokens": 160, "grounded": True})
    return Rating(**{**values, **overrides})


def database_bytes(path) -> bytes:
    """The database file and its write-ahead log: everything SQLite has put on disk."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_stored_rows_never_hold_raw_personal_details(tmp_path, masker, caplog):
    caplog.set_level(logging.DEBUG)
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    reason = "Wrong! John Smith here, call me at 415-555-0123"
    assert store.record(rating(question=PII_QUESTION, reason=reason, answer=ANSWER + "\nJohn Smith asked."))

    [row] = store.rows()
    assert "glaucoma" in row["question"] and "<US_SSN>" in row["question"]
    assert {"PERSON", "US_SSN", "EMAIL", "PHONE"} <= set(row["masked_types"])
    assert row["question_type"] == "treatment" and row["reason"].startswith("Wrong!")
    assert row["urls"] == ["https://nei.nih.gov/health/glaucoma/glaucoma_facts"]  # public NIH links are kept
    assert row["liked"] is False and row["shown"] == "model" and row["settings"]["temperature"] == 0.7
    on_disk = database_bytes(store.path)
    for value in PII_VALUES:
        assert value.encode() not in on_disk, value
        assert value not in caplog.text, value
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_server_text_is_masked_once_however_often_its_answer_is_rated(tmp_path, masker):
    """A flood of ratings of one answer masked its question, answer, URLs and sources again for each (issue 23):
    the server's texts are masked once; the client's reason every time, and it is never remembered."""
    texts = []

    class Counting:
        def mask(self, text):
            texts.append(text)
            return masker.mask(text)

    store = FeedbackStore(tmp_path / "feedback.sqlite3", Counting())
    for reason in ("wrong", "Jane Roe here, wrong again"):
        assert store.record(rating(question=PII_QUESTION, reason=reason, answer=ANSWER))
    assert texts.count("wrong") == 1 and texts.count("Jane Roe here, wrong again") == 1
    assert len(texts) - 2 == len(set(texts) - {"wrong", "Jane Roe here, wrong again"})  # the rest once each
    assert not any("Jane" in text for text, _ in store._masked)
    assert [row["question"] for row in store.rows()] == [store.rows()[0]["question"]] * 2


def test_the_database_is_created_by_the_first_rating(tmp_path, masker):
    store = FeedbackStore(tmp_path / "sub" / "feedback.sqlite3", masker)
    assert store.available and not store.path.exists() and store.rows() == []
    assert store.snapshot(tmp_path / "copy.sqlite3") is None
    assert store.record(rating()) and len(store.rows()) == 1


def test_twenty_threads_write_at_once(tmp_path, masker):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    # Warm the masker in this thread: the test is about the database, not spaCy's first load.
    masker.mask("warm up")

    def rate(worker: int) -> list[bool]:
        return [store.record(rating(session_id=f"s{worker}", liked=bool(i % 2), question=f"What causes gout {i}?"))
                for i in range(3)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = [ok for batch in pool.map(rate, range(20)) for ok in batch]
    assert results == [True] * 60
    rows = store.rows()
    assert len(rows) == 60 and len({row["session_id"] for row in rows}) == 20
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_corrupt_database_logs_one_line_and_never_raises(tmp_path, masker, caplog):
    path = tmp_path / "feedback.sqlite3"
    path.write_bytes(b"this is not a database, it was truncated by a crash" * 100)
    caplog.set_level(logging.WARNING, logger="gpt2chat.serving.feedback")
    store = FeedbackStore(path, masker)
    assert store.available is False
    assert store.record(rating()) is False and store.record(rating()) is False
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "is unusable" in lines[0] and str(path) in lines[0]
    assert store.rows() == []


def test_locked_database_costs_the_rating_not_the_chat(tmp_path, masker, caplog):
    path = tmp_path / "feedback.sqlite3"
    store = FeedbackStore(path, masker, timeout=0.2)
    assert store.record(rating())
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    caplog.set_level(logging.WARNING, logger="gpt2chat.serving.feedback")
    try:
        assert store.record(rating()) is False
        assert store.record(rating()) is False
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "database is locked" in lines[0] and "the chat goes on" in lines[0]
    assert store.record(rating()) is True and len(store.rows()) == 2


def test_rating_rejects_what_it_cannot_store():
    with pytest.raises(ValueError, match="shown must be one of"):
        rating(shown="hallucinated")
    with pytest.raises(ValueError, match="session id"):
        rating(session_id=" ")
    with pytest.raises(RuntimeError, match="no masker"):
        FeedbackStore("unused.sqlite3", create=False).record(rating())


def test_shown_takes_the_engines_answer_kinds_and_stores_their_values(tmp_path, masker):
    from gpt2chat.chat.kinds import AnswerKind

    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    for kind in AnswerKind:
        assert store.record(rating(shown=kind))
    assert sorted(row["shown"] for row in store.rows()) == ["extract", "model", "none"]
    with sqlite3.connect(store.path) as connection:  # plain text in the database, not an enum's repr
        assert sorted(value for (value,) in connection.execute("SELECT shown FROM ratings")) == [
            "extract", "model", "none"]
    with pytest.raises(ValueError, match="shown must be one of model, extract, none, not 'no_answer'"):
        rating(shown="no_answer")  # a reply category, not an answer kind


def test_the_settings_read_from_the_environment(caplog):
    assert settings.feedback_settings({}) == settings.FeedbackSettings(
        enabled=True, db_path=settings.FEEDBACK_DB, max_mb=None, hub_repo="")
    assert not settings.feedback_settings({settings.FEEDBACK_ENV: " Off"}).enabled
    read = settings.feedback_settings({settings.FEEDBACK_DB_ENV: "/tmp/x.sqlite3", settings.FEEDBACK_MAX_MB_ENV: "1.5",
                                       settings.FEEDBACK_REPO_ENV: " me/fb "})
    assert (read.db_path.as_posix(), read.max_mb, read.hub_repo) == ("/tmp/x.sqlite3", 1.5, "me/fb")
    caplog.set_level(logging.WARNING, logger="gpt2chat.settings")
    assert settings.feedback_settings({settings.FEEDBACK_MAX_MB_ENV: "lots"}).max_mb is None  # logged, not raised
    assert settings.FEEDBACK_MAX_MB_ENV in caplog.text


def _filled_store(tmp_path, masker) -> FeedbackStore:
    day = iter(dt.datetime(2026, 11, d, 12, tzinfo=dt.timezone.utc) for d in (20, 20, 21, 22, 22, 22))
    store = FeedbackStore(tmp_path / "db" / "feedback.sqlite3", masker, clock=lambda: next(day))
    store.record(rating(liked=True, session_id="alice", question="What is glaucoma?", reason=""))
    store.record(rating(liked=False, session_id="alice", question=PII_QUESTION))
    store.record(rating(liked=True, session_id="bob", question="What causes gout?", sources=["GARD"], reason=""))
    store.record(rating(liked=False, session_id="bob", question="What causes gout?", sources=["GARD"],
                        reason="off-topic", shown="extract"))
    store.record(rating(liked=False, session_id="carol", question="Is gout inherited?", model_id="other"))
    store.record(rating(liked=True, session_id="carol", question="Is gout inherited?", shown="none", reason=""))
    return store


def table_rows(markdown: str) -> list[list[str]]:
    """The stripped cells of every Markdown table row, header rows included, separator rows left out."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|")]
    return [row for row in rows if not all(set(cell) <= set(":-") for cell in row)]


def test_report_export_and_delete_commands(tmp_path, masker, capsys):
    store = _filled_store(tmp_path, masker)
    db = str(store.path)

    assert feedback.main(["report", "--db", db, "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "feedback.md").read_text()
    assert "**6 ratings** from 3 sessions between 2026-11-20 and 2026-11-22: **50.0% thumbs up**" in report
    rows = table_rows(report)
    assert ["treatment", "1", "0.0%"] in rows and ["causes", "2", "50.0%"] in rows
    assert ["GARD", "2", "50.0%"] in rows and ["extract", "1", "0.0%"] in rows
    worst = rows[rows.index(["👎", "👍", "masked question", "answer shown", "shown", "reasons"]) + 1:]
    assert [(down, up, reasons) for down, up, *_, reasons in worst] == \
        [("1", "0", "wrong"), ("1", "1", "off-topic"), ("1", "1", "wrong")]  # most thumbs down, then approval
    assert worst[0][2] == "I'm <PERSON>, SSN <US_SSN>, email <EMAIL>. How is my glaucoma treated?"
    assert "<US_SSN>" in report and "536-22-8741" not in report
    assert "off-topic (1)" in report
    for name in ("over_time", "approval_question_types", "approval_sources", "approval_models", "approval_shown"):
        assert (tmp_path / "out" / "feedback" / f"{name}.png").stat().st_size > 1000

    assert feedback.main(["export", "--db", db, "--out", str(tmp_path / "export")]) == 0
    import datasets

    exported = datasets.load_from_disk(str(tmp_path / "export"))
    assert len(exported) == 6 and set(exported["session_id"]) == {"alice", "bob", "carol"}
    assert not any("536-22-8741" in q for q in exported["question"])

    assert feedback.main(["delete", "--db", db, "--session", "bob"]) == 0
    assert "deleted 2 ratings" in capsys.readouterr().out
    assert feedback.main(["delete", "--db", db, "--before", "2026-11-21"]) == 0
    assert "deleted 2 ratings" in capsys.readouterr().out
    assert {row["session_id"] for row in store.rows()} == {"carol"}
    assert b"What causes gout" not in database_bytes(store.path)  # erased, not just unlinked from the table


def test_commands_explain_bad_input(tmp_path, capsys):
    assert feedback.main(["export", "--db", str(tmp_path / "missing.sqlite3")]) == 2
    assert "no usable feedback database" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        feedback.main(["delete", "--db", str(tmp_path / "x.sqlite3"), "--before", "last tuesday"])
    assert "not a date" in capsys.readouterr().err


def test_hub_sync_without_a_token_stays_local_and_says_so(tmp_path, masker, caplog):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    caplog.set_level(logging.INFO, logger="gpt2chat.serving.feedback")
    assert feedback.start_hub_sync(store, "me/gpt2chat-feedback", token="") is None
    assert feedback.start_hub_sync(store, "") is None
    first, second = [r.getMessage() for r in caplog.records]
    assert "no Hugging Face token" in first and "stays local" in first and str(store.path) in first
    assert "stored locally" in second


def test_the_app_store_follows_its_settings(tmp_path, masker):
    config = settings.FeedbackSettings(db_path=tmp_path / "app.sqlite3", max_mb=0.5)
    store = feedback.open_app_store(masker, config)
    assert store.path == tmp_path / "app.sqlite3" and store.hub_sync is None and store.max_bytes == 2**19
    assert feedback.open_app_store(masker, settings.FeedbackSettings(db_path=store.path)).max_bytes == \
        feedback.DEFAULT_MAX_BYTES
    assert feedback.open_app_store(masker, settings.FeedbackSettings(enabled=False, db_path=store.path)) is None


def test_hub_sync_builds_a_private_dataset_scheduler(tmp_path, masker):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    built = {}

    def scheduler(**kwargs):
        built.update(kwargs)
        return "scheduler"

    assert feedback.start_hub_sync(store, "me/fb", token="hf_x",
                                   scheduler_class=scheduler) == "scheduler"
    assert built["repo_id"] == "me/fb" and built["repo_type"] == "dataset" and built["private"] is True
    assert built["token"] == "hf_x" and built["folder_path"] == tmp_path / "hub" and built["squash_history"]
    assert built["snapshot"] == store.snapshot and built["allow_patterns"] == [feedback.SNAPSHOT_NAME]


def test_hub_sync_failure_keeps_the_store_local(tmp_path, masker, caplog):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)

    def offline(**kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'\nmore detail")

    caplog.set_level(logging.WARNING, logger="gpt2chat.serving.feedback")
    assert feedback.start_hub_sync(store, "me/fb", token="t", scheduler_class=offline) is None
    [line] = [r.getMessage() for r in caplog.records]
    assert "Failed to resolve 'huggingface.co'" in line and "more detail" not in line and "stays local" in line


class FakeHubApi:
    """What CommitScheduler calls on HfApi, recording each commit's files instead of uploading them."""

    def __init__(self):
        self.commits = []

    def create_repo(self, repo_id, private, repo_type, exist_ok):
        assert private is True and repo_type == "dataset" and exist_ok
        return types.SimpleNamespace(repo_id=repo_id)

    def run_as_future(self, function):
        future = concurrent.futures.Future()
        future.set_result(function())
        return future

    def create_commit(self, repo_id, repo_type, operations, commit_message, revision):
        self.commits.append({op.path_in_repo: op.path_or_fileobj.read() for op in operations})
        return "commit"

    def super_squash_history(self, repo_id, repo_type, branch):
        pass


def test_scheduler_uploads_a_consistent_snapshot(tmp_path, masker):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    api = FakeHubApi()
    scheduler = feedback.snapshot_scheduler_class()(
        snapshot=store.snapshot, repo_id="me/fb", repo_type="dataset", private=True, token="t",
        folder_path=tmp_path / "hub", allow_patterns=[feedback.SNAPSHOT_NAME], every=60, hf_api=api)
    try:
        store.record(rating(question=PII_QUESTION))
        store.record(rating())
        scheduler.trigger().result()
    finally:
        scheduler.stop()
    uploaded = api.commits[-1][feedback.SNAPSHOT_NAME]
    copy = tmp_path / "uploaded.sqlite3"
    copy.write_bytes(uploaded)
    assert FeedbackStore(copy, create=False).rows()[-1]["question"] == "What is glaucoma?"
    assert len(FeedbackStore(copy, create=False).rows()) == 2
    assert b"536-22-8741" not in uploaded


def test_every_field_is_cut_before_it_is_masked_and_surrogates_are_dropped(tmp_path, masker, monkeypatch):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    seen = []
    monkeypatch.setattr(masker, "mask", lambda text, real=masker.mask: seen.append(len(text)) or real(text))
    huge = "What is glaucoma? " + "x " * 500_000 + "call John Smith at 415-555-0123"
    assert store.record(rating(question=huge, reason="bad \ud800 answer from Jane Doe", answer=ANSWER * 2000))
    assert max(seen) <= feedback.LIMITS["answer"]  # nothing larger than a limit ever reached the masker
    [row] = store.rows()
    assert len(row["question"]) <= feedback.LIMITS["question"] and "glaucoma" in row["question"]
    assert "\ud800" not in row["reason"] and "answer" in row["reason"] and "Jane" not in row["reason"]
    assert feedback.storable("a b " + "c" * 10, 5) == "a b"  # cut at a space, never inside a value


def test_a_full_database_refuses_with_one_clear_line(tmp_path, masker, caplog):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    caplog.set_level(logging.WARNING, logger="gpt2chat.serving.feedback")
    assert store.record(rating()) is True
    store.max_bytes = store.size_bytes()
    assert store.record(rating()) is False and store.record(rating()) is False
    assert store.is_full() and len(store.rows()) == 1
    [line] = [r.getMessage() for r in caplog.records]
    assert "size cap" in line and settings.FEEDBACK_MAX_MB_ENV in line


def test_an_unwritable_store_recovers_when_its_folder_becomes_writable(tmp_path, masker, caplog):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root ignores permissions
        folder.chmod(0o700)
        folder.rmdir()
        folder.write_text("a file where the folder should be")
    caplog.set_level(logging.INFO, logger="gpt2chat.serving.feedback")
    store = FeedbackStore(folder / "feedback.sqlite3" if folder.is_dir() else folder / "sub" / "f.sqlite3", masker,
                          retry_s=0.0)
    assert store.record(rating()) is False
    feedback.start_hub_sync(store, "")
    messages = [r.getMessage() for r in caplog.records]
    assert any("unusable" in m for m in messages) and not any("stored locally" in m for m in messages)
    assert any("cannot be stored" in m for m in messages)
    if folder.is_dir():
        folder.chmod(0o700)
    else:
        folder.unlink()
        folder.mkdir()
    assert store.record(rating()) is True and len(store.rows()) == 1
    assert "usable again" in caplog.records[-1].getMessage()


def test_a_log_file_gone_between_listing_and_reading_is_not_counted(tmp_path, masker, monkeypatch):
    """SQLite removes the write-ahead log when the last connection closes, which another thread can do between the
    size check's listing and its stat (seen once in the twenty-thread test)."""
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    assert store.record(rating())
    size = store.path.stat().st_size
    gone = store.path.with_name(store.path.name + "-wal")
    path_type, stat = type(store.path), type(store.path).stat

    def stat_while_the_log_goes(self, *args, **kwargs):
        if self == gone:
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return stat(self, *args, **kwargs)

    monkeypatch.setattr(path_type, "glob", lambda self, pattern: iter([store.path, gone]))
    monkeypatch.setattr(path_type, "is_file", lambda self: True)  # it was there when listed
    monkeypatch.setattr(path_type, "stat", stat_while_the_log_goes)
    assert store.size_bytes() == size


@pytest.mark.parametrize("token", ["abcdefghijklmno-", "-bcdefghijklmnop", "abc_defghijklmn_", "abcdefghijklmnop"])
def test_every_answer_reference_is_found_in_the_reply_and_taken_back(monkeypatch, token):
    """secrets.token_urlsafe ends with "-" in one answer of 64: a word boundary required after it had left those
    answers unratable (and the feedback UI tests failing about one full run in six)."""
    monkeypatch.setattr(feedback.secrets, "token_urlsafe", lambda nbytes: token)
    ledger = feedback.AnswerLedger()
    issued = feedback.IssuedAnswer(question="What is glaucoma?", answer="Glaucoma is ...", shown="extract",
                                   urls=(), sources=(), model_id="none", settings={})
    reference = ledger.issue(issued)
    assert reference == f"ref-{token}"
    assert ledger.find(f"Glaucoma is ...\n\n<sub>Answer reference: {reference}</sub>") == issued
    assert ledger.get(reference) == issued and ledger.get(f" {reference} ") == issued
    assert ledger.get(f"{reference}x") is None and ledger.find(f"ref-{token}x") is None
