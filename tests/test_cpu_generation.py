"""benchmarks/cpu_generation.py: the runtime comparison runs end to end (Keras alone here: the other runtimes'
packages are benchmark extras), and its arithmetic and argument checks hold."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import early_child, early_result

ROOT = Path(__file__).resolve().parent.parent


def benchmark_module(name: str):
    """A benchmark script as a module; registered under its name, as cpu_generation imports runtimes by name."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runtimes = benchmark_module("runtimes")
cpu_generation = benchmark_module("cpu_generation")


def run_benchmark(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_generation.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# The Keras run of the benchmark, end to end in its own process: started as soon as the tests are collected
# (``early_child``), since it is a run of several seconds that this module only waits for (22 s of the suite on the
# 2-core machine).
early_child("keras_benchmark", lambda folder: [
    sys.executable, str(ROOT / "benchmarks" / "cpu_generation.py"), "--size", "tiny", "--runtimes", "keras",
    "--runs", "1", "--new-tokens", "4", "--long-prompt-tokens", "60", "--long-new-tokens", "2",
    "--bandwidth-mib", "16", "--json", str(folder / "bench.json")], cwd=ROOT)


@pytest.fixture(scope="module")
def keras_benchmark(tmp_path_factory):
    """(what the benchmark printed, its JSON report); the test fails with its output if it failed."""
    child = early_result("keras_benchmark", tmp_path_factory)
    return (child.folder / "output.txt").read_text(), json.loads((child.folder / "bench.json").read_text())


def test_keras_run_reports_speed_memory_bound_and_a_grounded_prompt(keras_benchmark):
    printed, result = keras_benchmark
    assert "| runtime | weights | first token (s) | first token, 60-token prompt (s) |" in printed
    assert result["prompts"] == {"short": 21, "long": 60}
    keras = result["runtimes"]["keras"]
    assert len(keras["short"]["token_ids"]) == 4 and len(keras["long"]["token_ids"]) == 2
    assert keras["short"]["seconds_to_first_token"] > 0 and keras["short"]["tokens_per_second"] > 0
    # its own process: TensorFlow alone takes a few hundred MB, and the parent's memory is not counted
    assert 200e6 < keras["peak_rss_bytes"] < 8e9
    assert result["bandwidth"]["gb_per_second"] > 0.1
    expected_bound = result["bandwidth"]["gb_per_second"] * 1e9 / (4 * result["weight_matrix_parameters"])
    assert keras["bound_tokens_per_second"] == pytest.approx(expected_bound)


def test_unknown_runtime_is_refused_in_one_line():
    done = run_benchmark("--runtimes", "keras,jax", timeout=120)
    assert done.returncode == 2
    assert "unknown runtime(s) jax; choose from keras, transformers" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_runtime_whose_package_is_missing_is_named(monkeypatch):
    class Missing(runtimes.Runtime):
        packages = ("numpy", "gpt2chat_no_such_package")

    monkeypatch.setitem(runtimes.RUNTIMES, "missing", Missing)
    assert runtimes.missing_packages("missing") == ["gpt2chat_no_such_package"]
    assert runtimes.missing_packages("keras") == []


def test_weights_read_per_token_of_the_124m_layout():
    layout = {"num_layers": 12, "hidden_dim": 768, "intermediate_dim": 3072}
    # 12 layers x (q, k, v, output 768x768 + MLP 768x3072 twice) + the tied 50257x768 head
    assert cpu_generation.weight_matrix_parameters(layout, 50257) == 84_934_656 + 38_597_376


def test_agreement_counts_leading_identical_ids():
    assert cpu_generation.agreement([1, 2, 3, 9], [1, 2, 3, 4]) == {"identical_leading_tokens": 3, "of": 4}
    assert cpu_generation.agreement([1, 2], [1, 2]) == {"identical_leading_tokens": 2, "of": 2}
