"""gpt2chat: a GPT-2 medical question-answering chatbot grounded in MedQuAD. Commands: ``gpt2chat`` (gpt2chat.cli)."""

from gpt2chat.cli import install_command_finder

install_command_finder()  # python -m gpt2chat.<command>, with no module per command (see gpt2chat.cli)
