"""The gpt2chat commands, in one registry.

    gpt2chat                       # lists the commands
    gpt2chat train --recipe tiny   # runs one (the same as python -m gpt2chat.train --recipe tiny)
    gpt2chat eval retrieval consumer   # an evaluation: the same as gpt2chat retrieval --eval consumer

``python -m gpt2chat.<command>`` keeps working without a module per command: importing ``gpt2chat`` adds
``CommandFinder`` to ``sys.meta_path``, which answers only for ``gpt2chat.<a command below>`` when no real module
has that name, with code that calls ``run``. ``import gpt2chat.train`` raises an ImportError that names the module
holding the code, so a command name never shadows a module.

Every command's ``main(argv)`` raises on bad input; ``run`` turns the errors a user can fix into one line on stderr
and exit status 2, and Ctrl-C into status 130, so no command copies that handling.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.abc
import importlib.machinery
import logging
import sys

from gpt2chat.errors import CommandError

# What a user can fix (a missing directory, a bad flag value, a model that does not load): one line, no traceback.
USER_ERRORS = (CommandError, ValueError, OSError)


@dataclasses.dataclass(frozen=True)
class Command:
    module: str  # the module whose main(argv) runs the command
    summary: str
    fixed_args: tuple[str, ...] = ()  # put before the user's arguments (an alias such as masking_eval)
    eval_args: tuple[str, ...] | None = None  # what `gpt2chat eval <command>` puts before the user's arguments
    resumable: bool = False  # an interrupted run resumes when the same command runs again


COMMANDS: dict[str, Command] = {
    "data": Command("gpt2chat.corpus.data", "read MedQuAD: the pairs kept and dropped per source"),
    "eda": Command("gpt2chat.reports.eda", "word clouds and distributions of the answered pairs (livrables/eda)"),
    "train": Command("gpt2chat.modeling.train", "train or fine-tune GPT-2 from a recipe", resumable=True),
    "sweep": Command("gpt2chat.reports.sweep", "train recipe variants; write livrables/optimisation.md",
                     resumable=True),
    "export": Command("gpt2chat.modeling.export_check", "export a run to OpenVINO for fast CPU serving; --check it"),
    "masking": Command("gpt2chat.guard.masking_eval", "mask the PII of a message, or --eval the masker",
                       eval_args=("--eval",)),
    "masking_eval": Command("gpt2chat.guard.masking_eval", "score the PII masker (the same as masking --eval)",
                            fixed_args=("--eval",)),
    "safety": Command("gpt2chat.guard.emergency_eval", "assess a message, or --eval emergency detection",
                      eval_args=("--eval",)),
    "retrieval": Command("gpt2chat.search.retrieval_eval", "the passages for a question, or --eval retrieval",
                         eval_args=("--eval",)),
    "grounding": Command("gpt2chat.reports.grounding_eval", "--calibrate the support check and the extract",
                         eval_args=("--calibrate",)),
    "engine": Command("gpt2chat.chat.engine", "answer one question as the app does"),
    "followups": Command("gpt2chat.chat.followups", "suggested follow-up questions, or --eval them",
                         eval_args=("--eval",)),
    "feedback": Command("gpt2chat.serving.feedback", "report, export or delete the users' ratings"),
    "deploy": Command("gpt2chat.serving.deploy", "bundle the app for a Hugging Face Space and upload it"),
    "compare": Command("gpt2chat.reports.compare", "compare models on held-out questions (livrables/comparison.md)"),
    "answer_quality": Command("gpt2chat.reports.answer_quality",
                              "trained vs untrained model vs extract, as users read them (livrables/answer_quality.md)"),
    "slides": Command("gpt2chat.reports.slides", "the presentation, from the livrables"),
}


def run(name: str, argv: list[str] | None = None) -> int:
    """Run command ``name`` with ``argv`` (default: the process's arguments); returns the exit status."""
    command = COMMANDS[name]
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        main = importlib.import_module(command.module).main
        return main([*command.fixed_args, *argv]) or 0
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ": run the same command again to resume from the last checkpoint" if command.resumable else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return 130


EVALUATIONS = [name for name, command in COMMANDS.items() if command.eval_args]
_WIDTH = max(map(len, COMMANDS)) + 2
USAGE = f"""usage: gpt2chat <command> [arguments]     (or: python -m gpt2chat.<command> [arguments])

commands:
{chr(10).join(f"  {name:<{_WIDTH}}{command.summary}" for name, command in COMMANDS.items())}

evaluations:
{chr(10).join(f"  eval {name:<{_WIDTH}}= {name} {' '.join(COMMANDS[name].eval_args)}" for name in EVALUATIONS)}

gpt2chat <command> --help describes a command's arguments. The app: python app.py --help.
"""


def main(argv: list[str] | None = None) -> int:
    """The ``gpt2chat`` console script: ``gpt2chat <command> ...`` or ``gpt2chat eval <name> ...``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    name, rest = argv[0], argv[1:]
    if name == "eval":
        if not rest or rest[0] not in EVALUATIONS:
            print(f"usage: gpt2chat eval <name> [arguments]; names: {', '.join(EVALUATIONS)}", file=sys.stderr)
            return 0 if not rest or rest[0] in ("-h", "--help") else 2
        return run(rest[0], [*COMMANDS[rest[0]].eval_args, *rest[1:]])
    if name not in COMMANDS:
        print(f"gpt2chat: unknown command {name!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return run(name, rest)


class CommandFinder(importlib.abc.MetaPathFinder):
    """Finds ``gpt2chat.<command>`` for ``python -m``: see the module's docstring."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != "gpt2chat" or name not in COMMANDS:
            return None
        # runpy sets sys.argv[0] to the origin: this file, which runs the command.
        return importlib.machinery.ModuleSpec(fullname, _CommandLoader(name), origin=__file__)


class _CommandLoader(importlib.abc.InspectLoader):
    def __init__(self, name: str):
        self.name = name

    def get_source(self, fullname: str) -> str:
        # runpy executes this code as __main__ (it calls get_code, never exec_module).
        return (f"if __name__ == '__main__':\n"
                f"    import sys, gpt2chat.cli\n"
                f"    sys.exit(gpt2chat.cli.run({self.name!r}))\n")

    def exec_module(self, module):
        raise ImportError(f"gpt2chat.{self.name} is a command, not a module: its code is in "
                          f"{COMMANDS[self.name].module}; run it with gpt2chat {self.name} or "
                          f"python -m gpt2chat.{self.name}", name=module.__name__)


def install_command_finder() -> None:
    if not any(isinstance(finder, CommandFinder) for finder in sys.meta_path):
        sys.meta_path.append(CommandFinder())
