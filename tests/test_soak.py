"""benchmarks/soak.py without a server: its bounds, its message mix and its summary. The soak itself takes minutes
and the whole CPU, so it is run by hand (see its --help), never by the suite."""

from __future__ import annotations

import importlib.util
import random
import sys

import pytest

from gpt2chat import settings


def _load_soak():
    spec = importlib.util.spec_from_file_location("soak", settings.REPO_ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


soak = _load_soak()


@pytest.mark.parametrize("excess", [dict(users=0), dict(users=65), dict(seconds=0), dict(seconds=901),
                                    dict(sequential=-1), dict(sequential=5001), dict(hostile_share=1.5)])
def test_the_soak_is_bounded(tmp_path, excess):
    (tmp_path / "config.json").write_text("{}")
    soak.SoakConfig(model=str(tmp_path)).validate()
    with pytest.raises(ValueError):
        soak.SoakConfig(model=str(tmp_path), **excess).validate()


def test_the_soak_stays_on_loopback_and_needs_a_model(tmp_path):
    assert soak.HOST == "127.0.0.1"
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
    assert soak._slope([(500, 100.0), (600, 101.0), (700, 102.0)]) == pytest.approx(0.01)
