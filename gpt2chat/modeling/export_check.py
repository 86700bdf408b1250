"""How closely an export serves like its Keras model, on held-out test questions (``python -m gpt2chat.export
MODEL_DIR --check N``); this module's ``main`` is the export command.

Each question gets the grounded prompt the engine builds (its own NIH passage as the reference). Measured:

* greedy agreement: the share of questions whose greedy ids (up to ``max_new_tokens``, stopping at
  <|endoftext|>) are identical, and the share of Keras's tokens the export reproduces before it first diverges;
* perplexity per answer token, teacher-forced on the question's answer, through each runtime's own serving path
  (the export is fed one token at a time through its key/value cache, as when it generates).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gpt2chat.markdown import markdown_table
from gpt2chat.modeling.export import FORMATS, export_model
from gpt2chat.modeling.openvino_gpt2 import WEIGHT_FORMATS
from gpt2chat.modeling.rundir import perplexity


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def keras_answer_nats(causal_lm, prompt: list[int], answer: list[int]) -> float:
    """Summed cross-entropy (nats) of ``answer`` after ``prompt`` under the Keras model, in one forward pass."""
    from keras import ops

    ids = np.asarray([prompt + answer], dtype=np.int32)
    logits = causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}, training=False)
    logits = np.asarray(ops.convert_to_numpy(ops.cast(logits, "float32")))[0, len(prompt) - 1:-1]
    return float(-_log_softmax(logits)[np.arange(len(answer)), answer].sum())


def export_answer_nats(generator, prompt: list[int], answer: list[int]) -> float:
    """The same through the export's serving path: the prompt at once, then the answer token by token."""
    _, logits, state = generator._first_logits(prompt)
    total = 0.0
    for position, token in enumerate(answer):
        total -= float(_log_softmax(np.asarray(logits[0], dtype=np.float64))[token])
        if position + 1 < len(answer):
            _, logits, state = generator._next_logits(token, len(prompt) + position, state)
    return total


def agreement(reference: list[int], candidate: list[int]) -> int:
    """How many leading tokens of ``reference`` ``candidate`` reproduces."""
    same = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        same += 1
    return same


def held_out_questions(model_dir: str | Path, count: int, *, data: str | None = None, seed: int = 0):
    """``count`` test-split records (the run's split.json when it has one), a seeded sample."""
    from gpt2chat.corpus.data import load_records
    from gpt2chat.modeling import rundir

    records, _ = load_records(data)
    test = rundir.RunDirectory(model_dir).splits(records)["test"]
    chosen = np.random.default_rng(seed).permutation(len(test))[:count]
    return [test[i] for i in sorted(chosen)]


def check_export(model_dir: str | Path, count: int = 50, *, max_new_tokens: int = 64, data: str | None = None,
                 answer_tokens: int = 128, progress: bool = True) -> dict:
    """Greedy agreement and answer perplexity of the export of ``model_dir`` against its Keras model."""
    from tqdm import tqdm

    from gpt2chat.modeling.export import load_exported_generator, read_manifest
    from gpt2chat.modeling.generation import SamplingConfig, StreamingGenerator
    from gpt2chat.modeling.model import load_preset
    from gpt2chat.modeling.prompt import build_prompt, reference_passage

    manifest = read_manifest(model_dir)
    causal_lm = load_preset(model_dir)
    keras_generator = StreamingGenerator(causal_lm)
    exported = load_exported_generator(model_dir, tokenizer=keras_generator.tokenizer)
    greedy = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    identical = reproduced = compared = 0
    nats = {"keras": 0.0, "export": 0.0}
    answer_count = 0
    records = held_out_questions(model_dir, count, data=data)
    for record in tqdm(records, desc="check", disable=not progress):
        prompt = exported.encode(build_prompt(record.question, reference=reference_passage(record.answer)))
        prompt = prompt[-exported.prompt_budget(max(max_new_tokens, answer_tokens)):]
        expected = list(keras_generator.stream_ids(prompt, greedy))
        produced = list(exported.stream_ids(prompt, greedy))
        identical += expected == produced
        reproduced += agreement(expected, produced)
        compared += len(expected)
        answer = exported.encode(" " + record.answer)[:answer_tokens]
        nats["keras"] += keras_answer_nats(causal_lm, prompt, answer)
        nats["export"] += export_answer_nats(exported, prompt, answer)
        answer_count += len(answer)
    keras_loss, export_loss = nats["keras"] / answer_count, nats["export"] / answer_count
    return {
        "model": str(model_dir), "weights": manifest["weights"], "questions": len(records),
        "max_new_tokens": max_new_tokens, "identical_greedy": identical / len(records),
        "tokens_reproduced": reproduced / compared if compared else 1.0, "answer_tokens": answer_count,
        "keras_perplexity": perplexity(keras_loss), "export_perplexity": perplexity(export_loss),
        "perplexity_change": perplexity(export_loss) / perplexity(keras_loss) - 1.0,
    }


def check_table(figures: dict) -> str:
    """The figures as a Markdown table."""
    import pandas as pd

    row = {
        "model": figures["model"], "weights": figures["weights"], "questions": figures["questions"],
        "identical greedy ids": f"{figures['identical_greedy']:.0%}",
        "Keras tokens reproduced": f"{figures['tokens_reproduced']:.1%}",
        "perplexity Keras / export": f"{figures['keras_perplexity']:.2f} / {figures['export_perplexity']:.2f}",
        "change": f"{figures['perplexity_change']:+.3%}", "answer tokens": figures["answer_tokens"],
    }
    return markdown_table(pd.DataFrame([row]))


def main(argv: list[str] | None = None) -> int:
    """The export command: export a run directory, and/or --check the export against Keras."""
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.export", description="Export a Keras-Hub GPT-2 preset (a run directory) to OpenVINO for fast CPU serving; --check it.")
    parser.add_argument("model_dir", help="a Keras-Hub preset / run directory (e.g. models/default)")
    parser.add_argument("--format", choices=FORMATS, default="openvino", help="the serving runtime")
    parser.add_argument("--weights", choices=WEIGHT_FORMATS, default="int8",
                        help="int8: per-row symmetric int8 matrices (default, ~4x smaller, faster); "
                             "f32: exact float weights")
    parser.add_argument("--check", type=int, metavar="N", default=0,
                        help="then compare with the Keras model on N held-out test questions: greedy token "
                             "agreement and perplexity per answer token")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="greedy tokens per question for --check")
    parser.add_argument("--data", help="MedQuAD directory for --check (default: settings.medquad_dir())")
    parser.add_argument("--no-export", action="store_true", help="only --check the existing export")
    args = parser.parse_args(argv)
    if args.check < 0 or args.max_new_tokens < 1:
        parser.error("--check must be >= 0 and --max-new-tokens >= 1")
    if not args.no_export:
        export_model(args.model_dir, args.weights, quiet=False)
    if args.check:
        print(check_table(check_export(args.model_dir, args.check, max_new_tokens=args.max_new_tokens,
                                       data=args.data)))
    return 0

