import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gpt2chat.model import load_preset
from gpt2chat.train import TrainConfig, main, train


def test_twenty_steps_lower_the_loss(tiny_run):
    output, summary = tiny_run
    first, last = summary["history"][0], summary["history"][-1]
    assert last["step"] == 20
    assert last["val_loss"] < first["val_loss"] < 10.9  # ln(50257) ≈ 10.8 is the loss of a uniform guess
    assert summary["best_val_perplexity"] < 50257


def test_run_directory_is_a_loadable_preset_with_its_records(tiny_run):
    output, summary = tiny_run
    for name in ("training_config.json", "metrics.json", "split.json", "config.json", "model.weights.h5"):
        assert (output / name).is_file(), name
    assert json.loads((output / "training_config.json").read_text())["size"] == "tiny"
    assert json.loads((output / "metrics.json").read_text())["best_val_loss"] == summary["best_val_loss"]
    causal_lm = load_preset(output)
    assert causal_lm.backbone.num_layers == 2


def test_other_settings_in_the_same_directory_are_refused(tiny_run):
    output, _ = tiny_run
    with pytest.raises(ValueError, match="other settings"):
        train(TrainConfig.from_recipe("tiny", output=str(output), learning_rate=1e-4))


def test_bad_arguments_give_one_line_errors(tmp_path, capsys):
    assert main(["--output", str(tmp_path), "--steps", "25", "--eval-interval", "10"]) == 2
    assert "multiple of --eval-interval" in capsys.readouterr().err
    assert main(["--output", str(tmp_path), "--data", str(tmp_path / "missing")]) == 2
    assert "MedQuAD not found" in capsys.readouterr().err


def test_lora_fine_tuning_of_a_local_preset(tmp_path, medquad_dir):
    from gpt2chat.model import build_causal_lm

    build_causal_lm("tiny", 64).save_to_preset(str(tmp_path / "base"))
    summary = train(TrainConfig.from_recipe("tiny", output=str(tmp_path / "lora"), preset=str(tmp_path / "base"),
                                            lora_rank=4, data=str(medquad_dir), steps=10, warmup_steps=2,
                                            max_records=50))
    assert summary["history"][-1]["step"] == 10
    assert load_preset(tmp_path / "lora").backbone.num_layers == 2


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, medquad_dir):
    output = tmp_path / "run"
    args = [sys.executable, "-m", "gpt2chat.train", "--recipe", "tiny", "--output", str(output),
            "--data", str(medquad_dir), "--steps", "60", "--eval-rows", "8", "--max-records", "100"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = output / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_step = (json.loads(state.read_text())["epoch"] + 1) * 10
    assert saved_step < 60, "the run finished before it could be killed"
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resuming from step {saved_step}" in resumed.stdout
    history = json.loads((output / "metrics.json").read_text())["history"]
    assert [entry["step"] for entry in history] == list(range(10, 70, 10))


def test_recipes_are_data_and_flags_override_them():
    from gpt2chat.train import parse_args, read_recipe, recipe_names

    assert {"tiny", "quickstart", "finetune-base"} <= set(recipe_names())
    assert TrainConfig() == TrainConfig.from_recipe("quickstart")
    tiny = parse_args(["--recipe", "tiny", "--steps", "30"])
    assert tiny.recipe == "tiny" and tiny.size == read_recipe("tiny")["size"] and tiny.steps == 30
    assert parse_args(["--recipe", "finetune-base", "--from-scratch"]).preset is None
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig.from_recipe("no-such-recipe")
