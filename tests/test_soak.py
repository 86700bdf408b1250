"""benchmarks/soak.py without a server: its bounds, its message mix and its summary; the served-app helper it shares
with tests/test_ui.py; and the masker's spaCy memory, the leak the soak found. The soak itself takes minutes and the
whole CPU, so it is run by hand (see its --help), never by the suite."""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import sys
from pathlib import Path

import pytest

from gpt2chat.serving import server
from gpt2chat.guard.masking import PIIMasker

CHECKOUT = Path(__file__).resolve().parent.parent


def _load_soak():
    spec = importlib.util.spec_from_file_location("soak", CHECKOUT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


soak = _load_soak()


@pytest.mark.parametrize("excess", [dict(users=0), dict(users=65), dict(seconds=0), dict(seconds=901),
                                    dict(sequential=-1), dict(sequential=5001), dict(hostile_share=1.5),
                                    dict(attackers=9), dict(attackers=-1), dict(attacks=()), dict(attacks=("ddos",)),
                                    dict(rounds=0), dict(rounds=11), dict(boot_timeout_s=0), dict(boot_timeout_s=3601)])
def test_the_soak_is_bounded(tmp_path, excess):
    (tmp_path / "config.json").write_text("{}")
    soak.SoakConfig(model=str(tmp_path)).validate()
    with pytest.raises(ValueError):
        soak.SoakConfig(model=str(tmp_path), **excess).validate()


def test_the_soak_stays_on_loopback_and_needs_a_model(tmp_path):
    assert soak.HOST == "127.0.0.1"
    # every client calls from a loopback address of its own (127.0.0.0/8), honest users apart from attackers: each
    # honest user in a /24 network of its own, the attackers in one (one client's addresses) unless kept apart
    addresses = {soak.client_address(role, n) for role in ("user", "attacker") for n in range(soak.MAX_USERS)}
    assert len(addresses) == 2 * soak.MAX_USERS and all(a.startswith("127.") for a in addresses)
    network = lambda address: address.rsplit(".", 1)[0]  # noqa: E731
    assert len({network(soak.client_address("user", n)) for n in range(soak.MAX_USERS)}) == soak.MAX_USERS
    assert {network(soak.client_address("attacker", n)) for n in range(soak.MAX_ATTACKERS)} == {"127.0.2"}
    assert len({network(soak.client_address("attacker", n, apart=True)) for n in range(soak.MAX_ATTACKERS)}) == \
        soak.MAX_ATTACKERS
    with pytest.raises(ValueError, match="not a preset directory"):
        soak.SoakConfig(model=str(tmp_path / "missing")).validate()


def test_message_mix_covers_questions_and_every_hostile_kind():
    rng = random.Random(0)
    kinds = [soak.message_mix(rng, 0.4)[0] for _ in range(1000)]
    assert set(kinds) == {"valid", *soak.HOSTILE}
    assert 0.3 < 1 - kinds.count("valid") / len(kinds) < 0.5
    assert soak.HOSTILE["empty"] == "" and len(soak.HOSTILE["long_10k"]) > 10_000
    assert all(marker in soak.HOSTILE["personal_details"] for marker in soak.PII_MARKERS)


def test_summary_counts_outcomes_latencies_and_memory_growth():
    calls = [soak.Call("valid", "replied", seconds) for seconds in (1.0, 2.0, 3.0, 4.0)]
    calls += [soak.Call("empty", "refused", 0.1), soak.Call("long_10k", "error", 9.0)]
    summary = soak.summarise(calls)
    assert (summary["calls"], summary["errors"], summary["refused"]) == (6, 1, 1)
    assert (summary["valid_p50_s"], summary["valid_p95_s"]) == (3.0, 4.0)
    assert summary["by_kind"] == {"valid": {"replied": 4}, "empty": {"refused": 1}, "long_10k": {"error": 1}}
    pooled = soak._pooled([summary, soak.summarise([soak.Call("valid", "replied", 5.0), soak.Call("x", "limited", 0.0)])])
    assert (pooled["calls"], pooled["errors"], pooled["limited"], pooled["valid_p95_s"]) == (8, 1, 1, 5.0)
    assert soak._pooled([{**summary, "server_cores": 0.2}, {**summary, "server_cores": 0.4}])["server_cores"] == \
        pytest.approx(0.3)  # the server's CPU beside the users, averaged over the phases
    assert soak._slope([(500, 100.0), (600, 101.0), (700, 102.0)]) == pytest.approx(0.01)


def test_served_app_reports_an_app_that_exits_with_its_log(tmp_path):
    (tmp_path / "app.py").write_text("import sys\nprint('no model here')\nsys.exit(3)\n")
    with pytest.raises(server.AppDidNotStart, match=r"(?s)exited with 3.*no model here"):
        with server.served_app(tmp_path, tmp_path / "app.log", boot_timeout_s=60):
            pass


def test_masking_new_words_leaves_spacy_vocabulary_as_it_was(masker):
    """A server masks endless new words (names, typos, brands); spaCy kept every one in its StringStore (668 strings
    over 1,000 calls in benchmarks/memory_trace.py) until the masker ran inside ``nlp.memory_zone()``."""
    rng = random.Random(0)

    def word() -> str:
        return "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(4))

    masker.mask("warm-up: I am Jane Doe, what is asthma?")
    strings_before = len(masker.nlp.vocab.strings)
    results = [masker.mask(f"Hi, I am {word().title()} {word().title()}, my doctor said {word()}. What is gout?")
               for _ in range(50)]
    assert all(result.text.startswith("Hi, I am <PERSON>") for result in results)  # still masks inside the zone
    assert len(masker.nlp.vocab.strings) == strings_before

    unzoned = PIIMasker(dataclasses.replace(masker.config, memory_zone=False))
    unzoned.mask("warm-up")
    before = len(unzoned.nlp.vocab.strings)
    unzoned.mask(f"my doctor said {word()} {word()}")
    assert len(unzoned.nlp.vocab.strings) > before  # what the zone prevents: the test can fail


def test_abuse_attacks_are_known_and_the_traceback_summary_reads_the_exception_line():
    assert set(soak.ATTACKS) == {"big_rating", "rating_flood", "upload", "state_parking", "malformed_history", "echo"}
    with pytest.raises(ValueError, match="unknown attack"):
        soak.attack("ddos", "http://127.0.0.1:1", None, {"components": [], "dependencies": []})
    assert [soak._outcome(t) for t in ("status 429: {}", "event: complete\ndata: [1]", 'data: {"success": true}',
                                       "event: error\ndata: null")] == ["429", "completed", "completed", "error event"]
    log = "ok\nTraceback (most recent call last):\n  File x\n    raise\nValueError: boom\nnext\n"
    assert soak._traceback_errors(log) == ["ValueError: boom"]
