"""The comparison report: a tiny trained model against an untrained one of the same size, on a few questions."""

from __future__ import annotations

import http.server
import json
import math
import threading

import pytest

from gpt2chat.cli import run
from gpt2chat.reports import compare, evaluation, judge
from gpt2chat.reports.metrics import token_f1

QUESTIONS = ("What causes asthma?", "How is high blood pressure treated?")
TOKENIZER_BUILDS = []  # gpt2_tokenizer() calls made through the tokenizer module during the comparison's run


@pytest.fixture(scope="module")
def comparison(tiny_run, tiny_generic_run, medquad_dir, full_index_cache, tmp_path_factory):
    from gpt2chat.modeling import tokenizer

    run_dir, _ = tiny_run
    out = tmp_path_factory.mktemp("comparison")
    config = compare.CompareConfig(
        models=[str(tiny_generic_run[0]), str(run_dir), "scratch:tiny"], data=str(medquad_dir), out=str(out), limit=3, perplexity_rows=8,
        # Rows of 128 tokens, not the report's 256: the loss over 50,257 logits per position was 9.6 s of the
        # fixture's 65 s (24 batches of 4 rows), and every check here holds at any row length.
        sequence_length=128, max_new_tokens=24, questions=QUESTIONS, progress=False,
    )
    build = tokenizer.gpt2_tokenizer

    def counted_build():
        TOKENIZER_BUILDS.append(1)
        return build()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokenizer, "gpt2_tokenizer", counted_build)
        return compare.run(config), out, str(run_dir)


def test_writes_report_files(comparison):
    result, out, _ = comparison
    for name in ("comparison.md", "comparison.json", "comparison.html", "comparison_quality.png",
                 "comparison_perplexity.png", "comparison_latency.png"):
        assert (out / name).stat().st_size > 0, name
    markdown = (out / "comparison.md").read_text()
    assert "scratch:tiny" in markdown and "gold pair excluded" in markdown
    assert all(q in markdown for q in QUESTIONS)
    page = (out / "comparison.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<table>" in page
    assert json.loads((out / "comparison.json").read_text())["pair_ids"] == result["pair_ids"]


def test_metrics_match_a_direct_recomputation(comparison):
    import sacrebleu
    from rouge_score import rouge_scorer

    _, out, _ = comparison
    saved = json.loads((out / "comparison.json").read_text())
    references = saved["references"]
    assert len(references) == 3
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for model in saved["results"].values():
        for mode, answers in model["modes"].items():
            predictions = answers["predictions"]
            metrics = answers["metrics"]
            scores = [scorer.score(r, p) for p, r in zip(predictions, references)]
            for name in ("rouge1", "rouge2", "rougeL"):
                expected = 100 * sum(s[name].fmeasure for s in scores) / len(scores)
                assert metrics[name] == pytest.approx(expected)
            assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
            f1 = [token_f1(p, r) for p, r in zip(predictions, references)]
            assert metrics["token_f1"] == pytest.approx(100 * sum(f1) / len(f1))


def test_grounding_scores_and_baselines(comparison):
    from gpt2chat.chat.kinds import AnswerKind

    result, out, run_dir = comparison
    labels = {m["spec"]: m["label"] for m in result["models"]}
    for mode in evaluation.MODES:
        answers = result["results"][labels[run_dir]]["modes"][mode]
        kinds = [k for k, text in zip(answers["answer_kinds"], answers["model_texts"]) if text is not None]
        assert answers["grounding"]["fallback_rate"] == pytest.approx(
            sum(k != AnswerKind.MODEL for k in kinds) / len(kinds))
    for label in evaluation.BASELINES:
        modes = result["results"][label]["modes"]
        assert set(modes) == {"grounded", "grounded_heldout"}
        assert all(answers["predictions"] and all(answers["predictions"]) for answers in modes.values())
    # lead-3 copies the cited passage's first sentences, so the support check must accept them (all but one-word
    # fragments such as "Nutrition.": 99.2% of lead-3 sentences on the 100 grounded test questions of
    # livrables/comparison.json)
    assert result["results"][evaluation.LEAD_BASELINE]["modes"]["grounded"]["grounding"]["support_rate"] >= 0.9
    markdown = (out / "comparison.md").read_text()
    assert "### Grounding" in markdown and evaluation.LEAD_BASELINE in markdown


def test_lead_at_the_same_length_and_copy_order(comparison):
    from gpt2chat.chat.grounding import split_sentences

    result, _, run_dir = comparison
    labels = {m["spec"]: m["label"] for m in result["models"]}
    answers = result["results"][labels[run_dir]]["modes"]["grounded"]
    lead = answers["lead_same_length"]
    for shown, by_words, by_sentences in zip(answers["predictions"], lead["texts"]["words"],
                                             lead["texts"]["sentences"]):
        assert len(by_words.split()) <= len(shown.split())
        assert len(split_sentences(by_sentences)) <= len(split_sentences(shown))
    assert len(lead["texts"]["words"]) == len(result["references"]) == 3
    assert "grounded_free" in result["results"][labels[run_dir]]["modes"]
    answer_loss = result["results"][labels[run_dir]]["answer_loss"]
    assert answer_loss["tokens"] == result["test_set"]["answer_tokens"] > 0
    assert answer_loss["loss"] < result["results"]["scratch:tiny"]["answer_loss"]["loss"]


def test_same_length_lead_and_copy_order_on_known_texts():
    passage = ("Glaucoma is a group of diseases that damage the optic nerve. It can cause blindness. "
               "Treatment includes eye drops and surgery.")
    references = ["Glaucoma damages the optic nerve and is treated with eye drops."] * 2
    lead = evaluation.same_length_lead(["Treatment includes eye drops and surgery.", ""], [passage, None], references)
    assert lead["texts"] == {"words": ["Glaucoma is a group of diseases", ""],
                             "sentences": ["Glaucoma is a group of diseases that damage the optic nerve.", ""]}
    order = evaluation.copy_order(["Treatment includes eye drops and surgery. It can cause blindness.",
                                   "Glaucoma is a group of diseases that damage the optic nerve.", "Made up."],
                                  [passage, passage, passage])
    assert order["positions"] == [[2, 1], [0], [None]]
    assert order["answers"] == 2 and order["starts_at_first_sentence"] == 0.5 and order["is_the_lead"] == 0.5
    assert order["first_position_mean"] == 1.0


class StandInEngine:
    """Replies fixed in advance, one per question and mode, in the order answer_questions asks."""

    def __init__(self, replies):
        from gpt2chat.chat.engine import EngineConfig

        self.config = EngineConfig(model=None)
        self.replies = iter(replies)
        self.asked = []

    def reply(self, question, *, grounded, sampling):
        self.asked.append((question, grounded, self.config.copy_mode, sampling.temperature))
        return next(self.replies)


def test_scores_of_known_replies():
    """Support, fallback and degenerate rates and the shown text counted by hand on three known replies per mode:
    a copied passage sentence (supported, shown), an invented sentence (unsupported: the extract is shown instead)
    and an emergency reply (no model text, no answer to score)."""
    from gpt2chat.chat.engine import ChatReply
    from gpt2chat.chat.kinds import AnswerKind, Category
    from gpt2chat.corpus.data import QAPair

    passage = ("Glaucoma is a group of diseases that damage the optic nerve. It can cause blindness. "
               "Treatment includes eye drops and surgery.")
    copied = ChatReply(answer="Glaucoma is a group of diseases that damage the optic nerve.",
                       answer_kind=AnswerKind.MODEL,
                       model_text="Glaucoma is a group of diseases that damage the optic nerve.", evidence=passage)
    invented = ChatReply(answer="Treatment includes eye drops and surgery.", answer_kind=AnswerKind.EXTRACT,
                         model_text="Bananas cure every disease of the moon quickly.", evidence=passage)
    emergency = ChatReply(answer="Call 911 now.", answer_kind=AnswerKind.NONE, category=Category.EMERGENCY)
    questions = [QAPair(pair_id=f"q{i}", document_id="d", subset="x", source="NEI", url="u", focus="Glaucoma",
                        question_type="information", question=f"question {i}",
                        answer="Glaucoma damages the optic nerve.") for i in range(3)]
    engine = StandInEngine([copied, invented, emergency] * len(evaluation.MODES))
    index = evaluation.HeldOutIndex(index=None)
    results = evaluation.answer_questions(engine, index, questions, max_new_tokens=8)
    assert list(results) == list(evaluation.MODES)
    assert [(grounded, copy_mode) for _, grounded, copy_mode, _ in engine.asked[::3]] == [
        (False, "hard"), (True, "hard"), (True, "hard"), (True, "off")]
    assert {temperature for *_, temperature in engine.asked} == {0.0}
    for mode, answers in results.items():
        assert answers["grounding"] == {"support_rate": 0.5, "fallback_rate": 0.5, "degenerate_model_text": 0.0,
                                        "degenerate_shown": 0.0}, mode
        assert answers["predictions"] == [copied.answer, invented.answer, emergency.answer]
        assert answers["answer_kinds"] == [AnswerKind.MODEL, AnswerKind.EXTRACT, AnswerKind.NONE]
        assert answers["copy_order"]["positions"] == [[0], [None], []]
        assert answers["lead_same_length"]["texts"]["sentences"][:2] == [
            "Glaucoma is a group of diseases that damage the optic nerve.",
            "Glaucoma is a group of diseases that damage the optic nerve."]
    assert engine.config.copy_mode == "hard"  # the engine's own config is restored after the free mode


def test_token_f1():
    assert token_f1("Insulin helps.", "insulin HELPS") == 1.0
    assert token_f1("a b", "a c") == pytest.approx(0.5)
    assert token_f1("", "something") == 0.0
    assert token_f1("", "") == 1.0


def test_the_tokenizer_is_built_once_per_run(comparison):
    """The perplexity, answer and plain-text rows share one tokenizer that ``run`` builds and passes in."""
    assert len(TOKENIZER_BUILDS) == 1


def test_trained_model_has_lower_test_perplexity(comparison):
    result, _, run_dir = comparison
    labels = {m["spec"]: m["label"] for m in result["models"]}
    trained = result["results"][labels[run_dir]]["perplexity"]["perplexity"]
    untrained = result["results"]["scratch:tiny"]["perplexity"]["perplexity"]
    assert math.isfinite(trained) and trained > 0
    assert trained < untrained


def test_generic_and_specialised_on_both_domains_and_the_shown_answers(comparison, tiny_generic_run, full_medquad):
    from gpt2chat.corpus.generic import read_texts
    from gpt2chat.reports import answer_quality

    result, out, run_dir = comparison
    families = {m["spec"]: m.get("family") for m in result["models"]}
    assert families == {str(tiny_generic_run[0]): "generic", run_dir: "specialised", "scratch:tiny": "untrained",
                        evaluation.LEAD_BASELINE: None, evaluation.EXTRACT_BASELINE: None}
    labels = {m["spec"]: m["label"] for m in result["models"]}
    rows = result["domain_rows"]
    general_installed = bool(read_texts("test", limit=1)) if "general" in rows else False
    for spec in (str(tiny_generic_run[0]), run_dir, "scratch:tiny"):
        domains = result["results"][labels[spec]]["domain_perplexity"]
        assert set(domains) == set(rows) and ("general" in rows) == general_installed
        for name, measured in domains.items():
            assert measured["tokens"] == rows[name] * result["test_set"]["sequence_length"]
            assert measured["perplexity"] == pytest.approx(math.exp(measured["loss"]))
        shown = result["results"][labels[spec]]["shown"]
        assert set(shown) == set(result["shown_sets"]) >= {"a", "b"}
        assert shown["a"]["questions"] == 3 and len(shown["a"]["answers"]) == 3
    extract = result["results"][evaluation.EXTRACT_BASELINE]["shown"]
    assert set(extract) == set(result["shown_sets"]) and extract["a"]["model_shown"] == 0.0
    # The measures are answer_quality's own: the extract's set (b), scored again directly, gives the same numbers.
    cases = answer_quality.medquad_cases(full_medquad[0], 3, seed=1337)["b"]
    again = answer_quality.score(_extract_engine(), cases, None)
    assert again["rouge2"] == pytest.approx(extract["b"]["rouge2"]) and again["answers"] == extract["b"]["answers"]
    markdown = (out / "comparison.md").read_text()
    assert markdown.index("## Conclusion") < markdown.index("## Models")
    assert "### Perplexity on general text and on MedQuAD answers" in markdown
    assert "### The answers users are shown" in markdown
    from gpt2chat.reports.report import comparison_conclusion

    assert comparison_conclusion(result) in markdown


def _extract_engine():
    from gpt2chat.chat.engine import ChatEngine, EngineConfig

    return ChatEngine.build(EngineConfig(model=None))


def test_default_models_are_every_built_run_and_an_untrained_one(tmp_path, monkeypatch):
    for name, settings_ in (("generic", {"corpus": "generic", "size": "small", "preset": None}),
                            ("default", {"size": "small", "preset": None})):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "training_config.json").write_text(json.dumps(settings_))
        (tmp_path / "models" / name / "config.json").write_text("{}")  # what makes it a preset directory
    monkeypatch.setattr(compare.settings, "HOME", tmp_path)
    models, notes = compare.default_models()
    assert models == ["gpt2_base_en", str(tmp_path / "models" / "generic"), str(tmp_path / "models" / "default"),
                      "scratch:small"]
    assert notes == ["`models/from-generic` is not part of this comparison: it is not built yet "
                     "(`python -m gpt2chat.train --recipe from-generic`)."]
    assert compare.parse_model(models[1]).role == "generic (general English, no MedQuAD)"
    assert compare.parse_model(models[2]).family == "specialised"


def test_judge_skipped_without_url(comparison):
    result, out, _ = comparison
    assert result["judge"]["status"] == "skipped"
    assert "skipped" in (out / "comparison.md").read_text()


class _Judge(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert request["messages"][0]["role"] == "system"
        body = json.dumps({"choices": [{"message": {"content": "Score: 4"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _judge_inputs():
    from gpt2chat.corpus.data import QAPair

    record = QAPair("s/d-1", "d", "s", "S", "", "asthma", "causes", "What causes asthma?", "Allergens and genes.")
    results = {"m": {"modes": {mode: {"predictions": ["Allergens."]} for mode in evaluation.MODES}}}
    return results, [record]


def test_judge_scores_through_an_openai_compatible_endpoint():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        results, records = _judge_inputs()
        config = judge.JudgeConfig(url=f"http://127.0.0.1:{server.server_port}", progress=False)
        judged = judge.run_judge(results, records, config)
    finally:
        server.shutdown()
    assert judged["status"] == "ok"
    assert judged["means"]["m"] == {mode: 4.0 for mode in evaluation.MODES}


def test_unreachable_judge_is_a_note_not_a_crash():
    results, records = _judge_inputs()
    config = judge.JudgeConfig(url="http://127.0.0.1:9/v1", progress=False)
    judged = judge.run_judge(results, records, config)
    assert judged["status"] == "failed" and "could not be used" in judged["note"]


def test_the_judge_comes_from_the_environment_unless_given(monkeypatch):
    from gpt2chat import settings

    monkeypatch.setenv(settings.JUDGE_URL_ENV, "http://judge.example/v1")
    monkeypatch.setenv(settings.JUDGE_KEY_ENV, "sk-test")
    monkeypatch.setenv(settings.JUDGE_MODEL_ENV, "judge-7b")
    config = compare.parse_args([])
    assert (config.judge_url, config.judge_model, config.judge_key) == ("http://judge.example/v1", "judge-7b", "sk-test")
    config = compare.parse_args(["--judge-url", "http://other/v1", "--judge-model", "m2"])
    assert (config.judge_url, config.judge_model, config.judge_key) == ("http://other/v1", "m2", "sk-test")
    for name in (settings.JUDGE_URL_ENV, settings.JUDGE_KEY_ENV, settings.JUDGE_MODEL_ENV):
        monkeypatch.delenv(name)
    config = compare.parse_args([])
    assert (config.judge_url, config.judge_model, config.judge_key) == (None, compare.CompareConfig.judge_model, None)


def test_held_out_index_drops_the_gold_pair(sample_records, sample_index):
    index = evaluation.HeldOutIndex(sample_index)
    record = next(r for r in sample_records if r.pair_id in {p.pair_id for p in index.search(r.question, k=3)})
    index.held_out = record
    passages = index.search(record.question, k=3)
    assert passages and all(p.pair_id != record.pair_id and p.answer != record.answer for p in passages)
    retrieved = index.retrieve(record.question, k=3)
    assert all(p.pair_id != record.pair_id and p.answer != record.answer
               for question in retrieved.questions for p in question.passages)
    index.held_out = None
    assert record.pair_id in {p.pair_id for p in index.retrieve(record.question, k=3).passages(3)}


def test_model_arguments(tmp_path, capsys):
    assert compare.parse_model("scratch:tiny").size == "tiny"
    assert compare.parse_model("gpt2_base_en").kind == "preset"
    assert run("compare", ["--model", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert run("compare", ["--model", "scratch:huge"]) == 2
    assert run("compare", ["--model", str(tmp_path)]) == 2  # a directory without a preset
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run("compare", ["--help"])
    assert exit_info.value.code == 0
    assert "scratch:SIZE" in capsys.readouterr().out
