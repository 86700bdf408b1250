"""Every command of the registry answers --help (a flag it promises must exist) without a traceback, through
``python -m gpt2chat.<command>`` and through the ``gpt2chat`` console script's entry point; the shared error handling
turns a user's mistake into one line and exit status 2."""

import importlib
import subprocess
import sys
import types

import pytest

from gpt2chat import cli

COMMANDS = ["data", "train", "sweep", "masking", "masking_eval", "safety", "retrieval", "grounding", "engine",
            "followups", "feedback", "deploy", "eda", "compare", "slides", "export", "answer_quality"]


def test_the_registry_lists_every_command():
    assert sorted(cli.COMMANDS) == sorted(COMMANDS)
    for name, command in cli.COMMANDS.items():
        assert callable(importlib.import_module(command.module).main), name


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    result = subprocess.run([sys.executable, "-m", f"gpt2chat.{command}", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "Traceback" not in result.stderr


def test_console_script_lists_and_runs_commands(capsys):
    assert cli.main([]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("usage: gpt2chat <command>")
    for name, command in cli.COMMANDS.items():
        assert f"  {name} " in listing and command.summary in listing
    assert "  eval retrieval" in listing and "= retrieval --eval" in listing
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0 and "--recipe" in capsys.readouterr().out
    assert cli.main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err


def test_python_dash_m_gpt2chat_is_the_console_script():
    result = subprocess.run([sys.executable, "-m", "gpt2chat", "eval", "grounding", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m gpt2chat.grounding")


def test_eval_puts_the_evaluation_flag_first(monkeypatch):
    seen = []
    monkeypatch.setitem(sys.modules, "fake_command", types.SimpleNamespace(main=lambda argv: seen.append(argv)))
    monkeypatch.setitem(cli.COMMANDS, "retrieval", cli.Command("fake_command", "x", eval_args=("--eval",)))
    assert cli.main(["eval", "retrieval", "consumer", "--limit", "5"]) == 0
    assert seen == [["--eval", "consumer", "--limit", "5"]]
    assert cli.main(["eval", "data"]) == 2  # not an evaluation


def test_a_command_name_is_not_a_module():
    with pytest.raises(ImportError, match="gpt2chat.train is a command, not a module: its code is in "
                                          "gpt2chat.modeling.train"):
        importlib.import_module("gpt2chat.train")


@pytest.mark.parametrize("error, status, message", [
    (FileNotFoundError("no MedQuAD at /nowhere"), 2, "error: no MedQuAD at /nowhere\n"),
    (ValueError("--steps must be at least 1"), 2, "error: --steps must be at least 1\n"),
    (KeyboardInterrupt(), 130, "\ninterrupted: run the same command again to resume from the last checkpoint\n"),
])
def test_shared_error_handling(monkeypatch, capsys, error, status, message):
    def main(argv):
        raise error

    monkeypatch.setitem(sys.modules, "fake_command", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli.COMMANDS, "train", cli.Command("fake_command", "x", resumable=True))
    assert cli.run("train", []) == status
    assert capsys.readouterr().err == message


def test_a_bug_is_not_hidden(monkeypatch):
    def main(argv):
        raise KeyError("a programming error keeps its traceback")

    monkeypatch.setitem(sys.modules, "fake_command", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli.COMMANDS, "data", cli.Command("fake_command", "x"))
    with pytest.raises(KeyError):
        cli.run("data", [])


def test_app_help():
    result = subprocess.run([sys.executable, "app.py", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--model" in result.stdout
