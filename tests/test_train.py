import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpt2chat import settings
from gpt2chat.modeling.model import load_preset
from gpt2chat.cli import run
from gpt2chat.modeling.train import train
from gpt2chat.modeling.training_config import TrainConfig


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
    assert run("train", ["--output", str(tmp_path), "--steps", "25", "--eval-interval", "10"]) == 2
    assert "multiple of --eval-interval" in capsys.readouterr().err
    assert run("train", ["--output", str(tmp_path), "--data", str(tmp_path / "missing")]) == 2
    assert "MedQuAD not found" in capsys.readouterr().err


def test_lora_fine_tuning_of_a_local_preset(tmp_path, small_medquad):
    from gpt2chat.modeling.model import build_causal_lm

    build_causal_lm("tiny", 64).save_to_preset(str(tmp_path / "base"))
    summary = train(TrainConfig.from_recipe("tiny", output=str(tmp_path / "lora"), preset=str(tmp_path / "base"),
                                            lora_rank=4, data=str(small_medquad), steps=10, warmup_steps=2,
                                            max_records=100))  # the pairs of the runs below: one reference index
    assert summary["history"][-1]["step"] == 10
    assert load_preset(tmp_path / "lora").backbone.num_layers == 2


def kill_at_first_checkpoint(command: list[str], output: Path, cache: Path | None = None) -> dict:
    """Start the training ``command`` (writing to ``output``; its token cache in ``cache`` when given), SIGKILL it
    once it has saved its first checkpoint, and return that checkpoint's state."""
    environment = {**os.environ, settings.CACHE_ENV: str(cache)} if cache else None
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    state = output / "checkpoints" / "state.json"
    # Generous: at a load average of 12 on the 2 shared cores, a 30-step tiny run took over 600 s.
    deadline = time.time() + 900
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    code = process.wait()
    assert state.exists(), f"no checkpoint saved (training exit code {code}, or still running after 900 s)"
    return json.loads(state.read_text())


def test_a_killed_run_resumes_exactly_where_it_stopped(tmp_path, small_medquad, capsys):
    """Killed after a checkpoint and started again, a run ends with the losses and weights of a run that was never
    killed. Dropout is on, so its random state must survive the resume too. The uninterrupted run and the resumed
    one are this process's own (as the 1-device run of the test below): only the killed one needs a process of its
    own, and the resumed one starts from what that process left on disk."""
    import numpy as np

    def command(output):
        return [sys.executable, "-m", "gpt2chat.train", "--recipe", "tiny", "--output", str(output), "--data",
                str(small_medquad), "--steps", "20", "--eval-rows", "8", "--max-records", "100", "--dropout", "0.1"]

    output = tmp_path / "run"
    # The killed run trains in its own process while this one trains the uninterrupted run (each is mostly one
    # core's work; in sequence they took 57 s of the suite on the 2-core machine). The child's token cache is its
    # own: two processes tokenizing the same pairs at once would write the same cache file.
    with ThreadPoolExecutor(max_workers=1) as pool:
        killed = pool.submit(kill_at_first_checkpoint, command(output), output, tmp_path / "child_cache")
        assert run("train", command(tmp_path / "whole")[3:]) == 0
        saved_step = (killed.result()["epoch"] + 1) * 10
    assert saved_step < 20, "the run finished before it could be killed"
    capsys.readouterr()
    assert run("train", command(output)[3:]) == 0
    assert f"resuming from step {saved_step}" in capsys.readouterr().out

    def losses(run_dir):
        history = json.loads((run_dir / "metrics.json").read_text())["history"]
        return [(entry["step"], entry["train_loss"], entry["val_loss"]) for entry in history]

    assert [step for step, _, _ in losses(output)] == [10, 20]
    assert losses(output) == losses(tmp_path / "whole")
    weights = [load_preset(run_dir).backbone.get_weights() for run_dir in (output, tmp_path / "whole")]
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


def test_a_diverging_run_stops_at_once_and_the_corrected_command_runs(tmp_path, small_medquad, capsys):
    args = ["--recipe", "tiny", "--output", str(tmp_path / "run"), "--data", str(small_medquad), "--steps", "10",
            "--warmup-steps", "2", "--max-records", "100"]  # the pairs of the other runs here: one reference index
    assert run("train", [*args, "--learning-rate", "10000"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the loader's progress bar
    assert err.startswith("error: training diverged at step") and "lower --learning-rate" in err, err
    step = int(err.split("at step ")[1].split()[0])
    assert step < 10  # stopped where it diverged, not at the end of the run
    assert not (tmp_path / "run" / "training_config.json").exists()
    assert run("train", args) == 0  # the corrected command is not refused as "a run with other settings"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["history"][-1]["step"] == 10


@pytest.mark.parametrize("flags, message", [
    (["--max-records", "0"], "--max-records must be at least 1"),
    (["--max-records", "-5"], "--max-records must be at least 1"),
    (["--learning-rate", "nan"], "--learning-rate must be a positive number"),
    (["--dropout", "1.5"], "--dropout must be"),
    (["--preset", "./no/such/preset"], "does not exist"),
    (["--preset", "gpt2_bse_en"], "does not exist"),
    (["--sequence-length", "4096"], "exceeds the model's context"),
])
def test_rejected_flags_are_one_line_errors_that_write_no_run_settings(tmp_path, small_medquad, capsys,
                                                                                flags, message):
    output = tmp_path / "run"
    assert run("train", ["--recipe", "tiny", "--output", str(output), "--data", str(small_medquad), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (output / "training_config.json").exists()


@pytest.mark.parametrize("output", ["a_file", "a_file/run"])
def test_output_at_or_under_a_file_is_a_one_line_error(tmp_path, small_medquad, capsys, output):
    (tmp_path / "a_file").write_text("mine")
    assert run("train", ["--recipe", "tiny", "--output", str(tmp_path / output), "--data", str(small_medquad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file" in err and (tmp_path / "a_file").read_text() == "mine"


def test_recipes_are_data_and_flags_override_them():
    from gpt2chat.modeling.train import parse_args
    from gpt2chat.modeling.training_config import read_recipe, recipe_names

    assert {"tiny", "quickstart", "finetune-base"} <= set(recipe_names())
    assert TrainConfig() == TrainConfig.from_recipe("quickstart")
    tiny = parse_args(["--recipe", "tiny", "--steps", "30"])
    assert tiny.recipe == "tiny" and tiny.size == read_recipe("tiny")["size"] and tiny.steps == 30
    assert parse_args(["--recipe", "finetune-base", "--from-scratch"]).preset is None
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig.from_recipe("no-such-recipe")


def test_loss_and_metric_count_answer_tokens_only():
    """The compiled loss and the logged answer_loss are sum(weight × cross-entropy) / sum(weight): a target
    with weight 0 (prompt, reference, question) changes neither."""
    import numpy as np

    from gpt2chat.modeling.tokens import pack_examples
    from gpt2chat.modeling.training_model import build_training_model

    config = TrainConfig.from_recipe("tiny")
    _, model = build_training_model(config)
    rng = np.random.default_rng(0)
    tokenized = [(rng.integers(0, 50000, size=30).astype(np.int32), rng.integers(0, 50000, size=8).astype(np.int32))
                 for _ in range(12)]
    x, y, weights = pack_examples(tokenized, config.sequence_length).batch
    logits = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    cross_entropy = -np.take_along_axis(log_probs, y[..., None], -1)[..., 0]
    expected = (cross_entropy * weights).sum() / weights.sum()
    assert 0 < weights.sum() < weights.size
    result = model.evaluate(x, y, sample_weight=weights, batch_size=len(y), return_dict=True, verbose=0)
    assert result["answer_loss"] == pytest.approx(expected, rel=1e-4)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    other_targets = np.where(weights > 0, y, (y + 1) % 50000)
    again = model.evaluate(x, other_targets, sample_weight=weights, batch_size=len(y), return_dict=True, verbose=0)
    assert again["answer_loss"] == pytest.approx(expected, rel=1e-4)


def test_run_reports_its_answer_tokens(tiny_run):
    output, summary = tiny_run
    assert 0 < summary["training_answer_tokens_available"] < summary["training_tokens_available"]
    assert all(entry["val_perplexity"] == pytest.approx(math.exp(entry["val_loss"])) for entry in summary["history"])


def test_a_checkpoint_whose_random_state_does_not_fit_the_model_is_refused():
    """A resume into a model with another number of dropout layers must fail with a one-line error, not draw
    masks from a mismatched state (which would silently break the exact-resume guarantee)."""
    from gpt2chat.modeling.model import build_causal_lm
    from gpt2chat.modeling.training_callbacks import restore_seed_states, seed_states

    model = build_causal_lm("tiny", 32, dropout=0.1)
    states = seed_states(model)
    assert states, "a model with dropout has seed generator state"
    restore_seed_states(model, states)  # its own state fits
    assert seed_states(model) == states
    with pytest.raises(ValueError, match="does not fit this model"):
        restore_seed_states(model, states[:-1])


# ------------------------------------------------------------------ several devices (gpt2chat.modeling.distribute)
# TensorFlow fixes its devices when it starts, so every multi-device run is a new process with logical CPU devices.


class Script:
    """A Python script (``code``) run in a process of its own in ``folder``, which it is given as its argument; its
    output goes to a file there."""

    def __init__(self, code: str, folder: Path, environment: dict | None = None):
        self.folder = folder
        folder.mkdir(parents=True)
        with open(folder / "output.txt", "wb") as output:
            self.process = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=output,
                                            stderr=subprocess.STDOUT, env=environment)

    def wait(self, timeout: float = 600) -> tuple[int, str]:
        """(exit code, output) once the script ends."""
        try:
            code = self.process.wait(timeout)
        finally:
            self.stop()
        return code, (self.folder / "output.txt").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module", autouse=True)
def device_scripts(request, tmp_path_factory):
    """The scripts of the two step tests below, started when this module starts (when those tests are selected) so
    that they run while the module's other tests train in this process: in sequence they took 40 s and 23 s of the
    suite on the 2-core machine, each mostly one core's work. Each test waits for its own script's result."""
    import importlib.util

    selected = {item.originalname for item in request.session.items if item.module is request.module}
    root = tmp_path_factory.mktemp("device_scripts")
    scripts = {}
    if "test_a_step_on_two_devices_is_the_step_on_one" in selected:
        scripts[STEPS_ON_ONE_AND_TWO_DEVICES] = Script(STEPS_ON_ONE_AND_TWO_DEVICES, root / "two_devices")
    if ("test_lora_on_a_model_split_over_two_devices_takes_the_one_device_steps" in selected
            and importlib.util.find_spec("jax") is not None):
        scripts[LORA_STEPS_WITH_MODEL_PARALLELISM] = Script(
            LORA_STEPS_WITH_MODEL_PARALLELISM, root / "lora_model_parallel",
            {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    yield scripts
    for script in scripts.values():
        script.stop()

STEPS_ON_ONE_AND_TWO_DEVICES = r"""
import sys
import numpy as np
from gpt2chat.modeling import distribute
strategy = distribute.strategy(2)
import keras
from gpt2chat.modeling.tokens import PackedTokens
from gpt2chat.modeling.training_config import TrainConfig
from gpt2chat.modeling.training_model import build_training_model

rows = np.random.default_rng(0).integers(0, 50000, size=(4, 65)).astype(np.int32)
weights = np.zeros_like(rows, dtype=np.float32)
weights[0, 2:60] = 1  # the first replica's rows hold 59 answer tokens, the second's 3
weights[2, 30] = weights[3, 5:7] = 1
batch = PackedTokens(rows, weights).batch
results = {}
for devices in (1, 2):
    config = TrainConfig.from_recipe("tiny", learning_rate=0.05, warmup_steps=1, devices=devices)
    keras.utils.set_random_seed(0)
    _, model = build_training_model(config, strategy if devices == 2 else None)
    before = np.concatenate([w.ravel() for w in model.get_weights()])
    if devices == 2:
        fitted = model.fit(distribute.distributed_batches(strategy, [batch] * 3, 3), steps_per_epoch=1, epochs=3,
                           verbose=0)
    else:  # the single-device path: no strategy, XLA
        fitted = model.fit(*batch[:2], sample_weight=batch[2], batch_size=4, epochs=3, verbose=0, shuffle=False)
    after = np.concatenate([w.ravel() for w in model.get_weights()])
    results.update({f"before{devices}": before, f"after{devices}": after, f"loss{devices}": fitted.history["loss"],
                    f"answer_loss{devices}": fitted.history["answer_loss"]})
np.savez(f"{sys.argv[1]}/steps.npz", **results)
"""


def test_a_step_on_two_devices_is_the_step_on_one(device_scripts):
    """Three steps (the first at learning rate 0) on one batch whose two halves hold 59 and 3 answer tokens, with
    gradients over the clipping norm: two replicas move the weights as one device does, to 1% of the move (Adam's
    steps amplify float noise in near-zero gradients: 0.16% measured). Averaging the replicas' own means, or
    clipping each replica's gradient, as Keras alone does, put them 199% of the move away."""
    import numpy as np

    script = device_scripts[STEPS_ON_ONE_AND_TWO_DEVICES]
    code, output = script.wait()
    assert code == 0, output[-3000:]
    result = np.load(script.folder / "steps.npz")
    assert result["loss2"] == pytest.approx(result["loss1"], rel=1e-5)
    assert result["answer_loss2"] == pytest.approx(result["answer_loss1"], rel=1e-5)
    assert np.array_equal(result["before1"], result["before2"])
    moved = np.abs(result["after1"] - result["before1"]).max()
    assert np.abs(result["after2"] - result["after1"]).max() < 0.01 * moved


def test_two_devices_follow_the_one_device_loss_curve_and_resume_mid_run(tmp_path, small_medquad):
    """The tiny recipe on 2 simulated devices, killed after its first checkpoint and started again, logs the loss
    curve of an uninterrupted 1-device run (within 1% at every logged step) and writes the same preset format."""
    import numpy as np

    def command(output, devices):
        return [sys.executable, "-m", "gpt2chat.train", "--recipe", "tiny", "--output", str(output), "--data",
                str(small_medquad), "--eval-rows", "6", "--max-records", "100", "--devices", str(devices)]

    output = tmp_path / "two"

    def killed_then_resumed():
        state = kill_at_first_checkpoint(command(output, 2), output, tmp_path / "child_cache")
        return state, subprocess.run(command(output, 2), capture_output=True, text=True, timeout=600,
                                     env={**os.environ, settings.CACHE_ENV: str(tmp_path / "child_cache")})

    # The two processes of 2 devices run while this one trains the 1-device run (in sequence: 90 s of the suite on
    # the 2-core machine); their token cache is their own, as in the test above.
    with ThreadPoolExecutor(max_workers=1) as pool:
        two_devices = pool.submit(killed_then_resumed)
        assert run("train", command(tmp_path / "one", 1)[3:]) == 0  # one device: this process's own
        state, resumed = two_devices.result()
    assert state["epoch"] == 0, "the run finished before it could be killed"
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming from step 10" in resumed.stdout and "data-parallel over 2 replicas" in resumed.stdout

    metrics = {run: json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two")}
    assert (metrics["one"]["replicas"], metrics["two"]["replicas"]) == (1, 2)
    curves = {run: [(e["step"], e["train_loss"], e["val_loss"]) for e in m["history"]] for run, m in metrics.items()}
    assert [step for step, _, _ in curves["two"]] == [10, 20]
    for (step, train_one, val_one), (_, train_two, val_two) in zip(curves["one"], curves["two"], strict=True):
        assert train_two == pytest.approx(train_one, rel=0.01) and val_two == pytest.approx(val_one, rel=0.01), step
    weights = [load_preset(tmp_path / run).backbone.get_weights() for run in ("one", "two")]
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(*weights, strict=True))


def test_a_global_batch_that_does_not_split_over_the_devices_is_a_one_line_error(tmp_path, capsys):
    assert run("train", ["--recipe", "tiny", "--output", str(tmp_path / "run"), "--devices", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch-size 4 (the global batch) must split evenly over the 3" in err


def test_a_cluster_of_machines_is_refused_in_one_line_with_the_upstream_reason(tmp_path, small_medquad, capsys,
                                                                             monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:23456", "localhost:23457"]},
                                                "task": {"type": "worker", "index": 0}}))
    output = tmp_path / "run"
    assert run("train", ["--recipe", "tiny", "--output", str(output), "--data", str(small_medquad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "names several machines" in err and "tensorflow/tensorflow#72388" in err
    assert "KERAS_BACKEND=jax and --num-processes" in err
    assert not (output / "training_config.json").exists()


def test_model_parallelism_on_tensorflow_is_a_one_line_error_naming_jax(tmp_path, small_medquad, capsys):
    output = tmp_path / "run"
    assert run("train", ["--recipe", "tiny", "--output", str(output), "--data", str(small_medquad), "--devices", "2",
                 "--model-parallel", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model-parallel needs the JAX backend" in err
    assert not (output / "training_config.json").exists()


LORA_STEPS_WITH_MODEL_PARALLELISM = r"""
import sys
import keras
import numpy as np
from gpt2chat.modeling import distribute
from gpt2chat.modeling.model import build_causal_lm
from gpt2chat.modeling.tokens import PackedTokens
from gpt2chat.modeling.training_config import TrainConfig
from gpt2chat.modeling.training_model import build_training_model

build_causal_lm("tiny", 64).save_to_preset(f"{sys.argv[1]}/base")
rows = np.random.default_rng(0).integers(0, 50000, size=(4, 65)).astype(np.int32)
weights = (np.random.default_rng(1).random(rows.shape) < 0.3).astype(np.float32)
x, y, w = PackedTokens(rows, weights).batch
results = {}
for devices in (1, 2):
    config = TrainConfig.from_recipe("tiny", preset=f"{sys.argv[1]}/base", lora_rank=4, learning_rate=0.05,
                                     warmup_steps=1, devices=devices, model_parallel=devices)
    distribute.setup(config.devices, config.model_parallel)  # 1 device: no distribution
    keras.utils.set_random_seed(0)
    _, model = build_training_model(config)
    query = next(v for v in model.variables if v.path.endswith("layer_0/self_attention/query/kernel"))
    before = np.concatenate([np.asarray(v).ravel() for v in model.trainable_variables])
    fitted = model.fit(x, y, sample_weight=w, batch_size=4, epochs=3, verbose=0, shuffle=False)
    results.update({f"before{devices}": before, f"loss{devices}": fitted.history["loss"],
                    f"after{devices}": np.concatenate([np.asarray(v).ravel() for v in model.trainable_variables]),
                    f"query_shard{devices}": query.value.addressable_shards[0].data.shape})
np.savez(f"{sys.argv[1]}/steps.npz", **results)
"""


def test_lora_on_a_model_split_over_two_devices_takes_the_one_device_steps(device_scripts):
    """JAX backend only (jax is not in requirements.txt; the test runs where it is installed): with
    --model-parallel 2 the query kernels hold half their head dimension per device, and three LoRA steps give the
    losses and trained weights of one device."""
    pytest.importorskip("jax")
    import numpy as np

    script = device_scripts[LORA_STEPS_WITH_MODEL_PARALLELISM]
    code, output = script.wait()
    assert code == 0, output[-3000:]
    result = np.load(script.folder / "steps.npz")
    assert tuple(result["query_shard1"]) == (64, 2, 32) and tuple(result["query_shard2"]) == (64, 2, 16)
    assert result["loss2"] == pytest.approx(result["loss1"], rel=1e-5)
    assert np.array_equal(result["before1"], result["before2"])
    moved = np.abs(result["after1"] - result["before1"]).max()
    assert moved > 0 and np.abs(result["after2"] - result["after1"]).max() < 0.01 * moved


# ------------------------------------------------------------------ several processes (machines): JAX only
# (gpt2chat.modeling.process_group)

def test_process_flags_fall_back_to_the_keras_variables_and_bad_ones_are_one_line_errors():
    from gpt2chat import settings
    from gpt2chat.modeling.distribute import DistributionError
    from gpt2chat.modeling.process_group import Processes, processes

    assert processes() == Processes() and Processes().writes
    environment = settings.keras_distribution({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:2345",
                                               "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                                               "KERAS_DISTRIBUTION_PROCESS_ID": "1"})
    assert processes(environment=environment) == Processes("10.0.0.1:1234", 2, 1)  # the first job coordinates
    assert not processes(environment=environment).writes
    assert processes("node0:9000", None, 0, environment) == Processes("node0:9000", 2, 0)  # flags come first
    for arguments, message in [(("h:1", 2, 2), "--process-id 2 must be at least 0 and below --num-processes 2"),
                               ((None, 2, 0), "--num-processes 2 needs --coordinator HOST:PORT"),
                               (("no port", 2, 0), "needs --coordinator HOST:PORT"),
                               ((None, None, None, (None, "two", None)), "$KERAS_DISTRIBUTION_NUM_PROCESSES and")]:
        with pytest.raises(DistributionError, match=re.escape(message)):
            processes(*arguments)


def test_several_processes_on_tensorflow_are_a_one_line_error_naming_jax(tmp_path, small_medquad, capsys):
    output = tmp_path / "run"
    assert run("train", ["--recipe", "tiny", "--output", str(output), "--data", str(small_medquad),
                         "--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the JAX backend" in err and "tensorflow/tensorflow#72388" in err
    assert not (output / "training_config.json").exists()


def test_a_batch_that_does_not_split_over_the_replicas_is_completed_with_rows_that_weigh_nothing():
    """JAX shards a batch evenly or not at all: --devices 2 with 7 validation rows (batches of 4 and 3) failed
    with "the dimension size is 3" before the last batch was completed. One process: the whole completed batch."""
    import numpy as np

    from gpt2chat.modeling.process_group import local_part
    from gpt2chat.modeling.tokens import PackedTokens

    rows = np.arange(3 * 65, dtype=np.int32).reshape(3, 65)
    batch = PackedTokens(rows, np.ones_like(rows, dtype=np.float32)).batch
    inputs, targets, weights = local_part(batch, 2)
    assert len(targets) == 4 and np.array_equal(targets[3], targets[0])  # a copy of a real row, not an empty one
    assert np.array_equal(inputs["token_ids"][3], inputs["token_ids"][0])
    assert weights[:3].all() and not weights[3].any()
    assert local_part(batch, 3)[1] is batch[1]  # splits already: untouched


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


JAX_ONE_DEVICE = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def jax_tiny_command(small_medquad) -> list[str]:
    return [sys.executable, "-m", "gpt2chat.train", "--recipe", "tiny", "--data", str(small_medquad),
            "--eval-rows", "6", "--max-records", "100"]


@pytest.fixture(scope="module")
def jax_one_device_run(tmp_path_factory, small_medquad) -> Path:
    """The tiny recipe on one JAX device: the curve the JAX distributions must follow."""
    pytest.importorskip("jax")
    output = tmp_path_factory.mktemp("jax") / "one"
    one = subprocess.run([*jax_tiny_command(small_medquad), "--output", str(output)], capture_output=True,
                         text=True, timeout=900, env={**os.environ, **JAX_ONE_DEVICE})
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-2000:]
    return output


def start_processes(command, outputs: list[Path], logs: Path, *, keras_variables: bool = False, extra=None):
    """``command`` (a train command without --output) as one process per entry of ``outputs``, on localhost, each
    on 1 CPU device with its own --output, as on separate machines; returns (process, its log file) pairs. With
    ``keras_variables``, the processes after the first are told where they stand by KERAS_DISTRIBUTION_* instead
    of flags. ``extra``: more flags for each process (a list per process)."""
    port, started = free_port(), []
    for index, output in enumerate(outputs):
        log = logs / f"process{index}-{time.monotonic_ns()}.log"
        where = {"coordinator": f"localhost:{port}", "num-processes": str(len(outputs)), "process-id": str(index)}
        flags = [] if keras_variables and index else [f for name, value in where.items() for f in (f"--{name}", value)]
        variables = {f"KERAS_DISTRIBUTION_{name}": value for name, value in zip(
            ("JOB_ADDRESSES", "NUM_PROCESSES", "PROCESS_ID"), where.values())} if keras_variables and index else {}
        with open(log, "w") as sink:
            started.append((subprocess.Popen([*command, "--output", str(output), *flags,
                                              *(extra[index] if extra else [])], stdout=sink,
                                             stderr=subprocess.STDOUT,
                                             env={**os.environ, **JAX_ONE_DEVICE, **variables}), log))
    return started


def finish(started, timeout: float = 900) -> list[tuple[int, str]]:
    """(exit code, output) of each started process; one still running after ``timeout`` s (a hang) is killed."""
    deadline, results = time.time() + timeout, []
    for process, log in started:
        try:
            code = process.wait(max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        results.append((code, log.read_text()))
    return results


@pytest.mark.slow
def test_two_processes_follow_the_one_device_loss_curve_resume_mid_run_and_only_the_first_writes(
        tmp_path, small_medquad, jax_one_device_run):
    """The tiny recipe as 2 processes on localhost (1 CPU device each; keras.distribution.initialize, gloo), killed
    after the first checkpoint and started again, logs the loss curve of an uninterrupted 1-device run (within 1%
    at every logged step). Each process has its own --output, as on two machines: the second never writes its own,
    and resumes from the checkpoint it receives from the first."""
    import numpy as np

    command = jax_tiny_command(small_medquad)
    outputs = [tmp_path / "first", tmp_path / "second"]
    started = start_processes(command, outputs, tmp_path)
    state = outputs[0] / "checkpoints" / "state.json"
    deadline = time.time() + 900
    while not state.exists() and time.time() < deadline and all(p.poll() is None for p, _ in started):
        time.sleep(0.2)
    for process, _ in started:
        process.send_signal(signal.SIGKILL)  # JAX catches SIGTERM (its preemption notice) and keeps running
    killed = finish(started)
    assert state.exists(), killed
    assert json.loads(state.read_text())["epoch"] == 0, "the run finished before it could be killed"

    resumed = finish(start_processes(command, outputs, tmp_path))
    assert [code for code, _ in resumed] == [0, 0], [text[-3000:] for _, text in resumed]
    assert all("resuming from step 10" in text for _, text in resumed)
    assert "process 1 of 2 done; process 0 saved the preset" in resumed[1][1]
    assert not outputs[1].exists()  # the second "machine" wrote nothing

    metrics = json.loads((outputs[0] / "metrics.json").read_text())
    assert (metrics["backend"], metrics["replicas"], metrics["processes"]) == ("jax", 2, 2)
    assert_same_curve_and_weights(jax_one_device_run, outputs[0])


def assert_same_curve_and_weights(one: Path, other: Path) -> None:
    """``other``'s run logged ``one``'s losses within 1% at every logged step and saved its weights (to 1e-3)."""
    import numpy as np

    curves = [[(e["step"], e["train_loss"], e["val_loss"]) for e in json.loads((run / "metrics.json").read_text())
               ["history"]] for run in (one, other)]
    assert [step for step, _, _ in curves[1]] == [10, 20]
    for (step, train_one, val_one), (_, train_two, val_two) in zip(*curves, strict=True):
        assert train_two == pytest.approx(train_one, rel=0.01) and val_two == pytest.approx(val_one, rel=0.01), step
    weights = [load_preset(run).backbone.get_weights() for run in (one, other)]
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(*weights, strict=True))


@pytest.mark.slow
def test_four_jax_devices_as_two_replicas_of_a_model_split_in_two_follow_the_one_device_curve(tmp_path, small_medquad,
                                                                                             jax_one_device_run):
    """--devices 4 --model-parallel 2 on 4 simulated CPU devices: DataParallel and the layout map at once (a 2 x 2
    mesh), through the train command; the loss curve is one device's within 1% at every logged step."""
    output = tmp_path / "four"
    done = subprocess.run([*jax_tiny_command(small_medquad), "--output", str(output), "--devices", "4",
                           "--model-parallel", "2"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "KERAS_BACKEND": "jax",
                               "XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ModelParallel over 4 devices in 1 process(es): 2 data-parallel replicas of 2 rows" in done.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["replicas"], metrics["model_parallel"]) == (2, 2)
    assert_same_curve_and_weights(jax_one_device_run, output)


@pytest.mark.slow
def test_a_diverging_run_of_two_processes_stops_both_in_one_line(tmp_path, small_medquad):
    """Both processes see the same global loss, so both stop at the same step with the one-line error, neither
    waits on the other, and no run settings are left behind. The second process is placed by Keras' variables."""
    pytest.importorskip("jax")
    command = [sys.executable, "-m", "gpt2chat.train", "--recipe", "tiny", "--data", str(small_medquad),
               "--steps", "10", "--warmup-steps", "2", "--eval-rows", "6", "--max-records", "100",
               "--learning-rate", "10000"]
    outputs = [tmp_path / "first", tmp_path / "second"]
    done = finish(start_processes(command, outputs, tmp_path, keras_variables=True), timeout=600)
    assert [code for code, _ in done] == [2, 2], [text[-3000:] for _, text in done]
    errors = [re.findall(r"error: .*", text) for _, text in done]  # process 0's may follow its progress bar
    assert all(len(e) == 1 and e[0].startswith("error: training diverged at step") for e in errors), errors
    assert errors[0] == errors[1] and "lower --learning-rate" in errors[0][0]
    assert not (outputs[0] / "training_config.json").exists() and not outputs[1].exists()


@pytest.mark.slow
def test_processes_that_differ_in_their_rows_stop_before_training_in_one_line(tmp_path, small_medquad):
    """The second process trains on 90 pairs where the first has 100: both stop before the first step with the same
    one-line error, and the first leaves no run settings behind."""
    pytest.importorskip("jax")
    outputs = [tmp_path / "first", tmp_path / "second"]
    done = finish(start_processes(jax_tiny_command(small_medquad), outputs, tmp_path,
                                  extra=[[], ["--max-records", "90"]]), timeout=600)
    assert [code for code, _ in done] == [2, 2], [text[-3000:] for _, text in done]
    errors = [re.findall(r"error: .*", text) for _, text in done]
    assert [len(e) for e in errors] == [1, 1], errors
    assert all("processes differ in their settings or training rows" in e[0] for e in errors), errors
    assert "Epoch 1/" not in done[0][1]
    assert not (outputs[0] / "training_config.json").exists() and not outputs[1].exists()


def test_train_refuses_a_folder_that_is_not_a_run_and_names_what_it_would_overwrite(tmp_path, capsys):
    from gpt2chat.modeling.train import check_output, main

    folder = tmp_path / "my_project"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "notes.txt"):
        (folder / name).write_text("mine")
    assert run("train", ["--recipe", "tiny", "--output", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "overwrite config.json, tokenizer.json" in error and "--force" in error and "notes.txt" not in error
    assert (folder / "config.json").read_text() == "mine" and not (folder / "training_config.json").exists()
    check_output(str(tmp_path / "new"))  # a new folder, an empty one and a run are fine
    (tmp_path / "empty").mkdir()
    check_output(str(tmp_path / "empty"))
    (folder / "training_config.json").write_text("{}")
    check_output(str(folder))  # a run: RunDirectory.prepare resumes it or refuses other settings
    (folder / "training_config.json").unlink()
    # --force skips the refusal: this run then stops at the missing MedQuAD folder, before writing anything.
    assert run("train", ["--recipe", "tiny", "--output", str(folder), "--force", "--data", str(tmp_path / "no_data")]) == 2
    error = capsys.readouterr().err
    assert "--force" not in error and "no_data" in error


def test_runs_on_the_same_pairs_in_one_process_share_their_reference_index(monkeypatch, sample_records):
    """A sweep's variants (and the runs of this module) train on the same pairs: their reference index is built once;
    other pairs get their own. Last in the module: it empties the kept index the runs above share."""
    from gpt2chat.modeling import training_data
    from gpt2chat.search.retrieval import RetrievalIndex

    built = []
    def build(cls, pairs, understand=True):
        assert not understand  # references come from search: no learned parts
        built.append(pairs)
        return object()

    monkeypatch.setattr(RetrievalIndex, "build", classmethod(build))
    training_data.reference_index.cache_clear()
    try:
        first = training_data.reference_index(tuple(sample_records[:5]))
        assert training_data.reference_index(tuple(sample_records[:5])) is first and len(built) == 1
        assert training_data.reference_index(tuple(sample_records[:4])) is not first and len(built) == 2
        assert built[1] == tuple(sample_records[:4])
    finally:
        training_data.reference_index.cache_clear()  # no stand-in index left for the runs after this test
