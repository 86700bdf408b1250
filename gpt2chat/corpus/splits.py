"""Deterministic train/validation/test split by focus (disease, drug or topic).

All pairs about one focus land in one split, so a test question never asks about a disease the model
was trained on. The split is a hash of the normalised focus name: it is stable across machines and
Python versions and does not move when records are added.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Sequence

from gpt2chat.corpus.data import QAPair, focus_key

SPLIT_NAMES = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    salt: str = "gpt2chat-v1"  # change to draw a different split


def _focus_key(record: QAPair) -> str:
    return focus_key(record.focus) or record.document_id


def split_of(record: QAPair, config: SplitConfig = SplitConfig()) -> str:
    return split_of_key(_focus_key(record), config)


def split_of_key(key: str, config: SplitConfig = SplitConfig()) -> str:
    """The split of every pair whose focus key (``data.focus_key``) is ``key``."""
    digest = hashlib.sha256(f"{config.salt}:{key}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < config.test_fraction:
        return "test"
    if position < config.test_fraction + config.validation_fraction:
        return "validation"
    return "train"


def split_records(records: Sequence[QAPair], config: SplitConfig = SplitConfig()) -> dict[str, list[QAPair]]:
    splits: dict[str, list[QAPair]] = {name: [] for name in SPLIT_NAMES}
    for record in records:
        splits[split_of(record, config)].append(record)
    return splits


def save_split(splits: dict[str, list[QAPair]], path: str | Path, config: SplitConfig = SplitConfig()) -> None:
    """Pair ids per split, so a run's evaluation can be reproduced exactly."""
    payload = {"config": dataclasses.asdict(config), **{n: [r.pair_id for r in splits[n]] for n in SPLIT_NAMES}}
    Path(path).write_text(json.dumps(payload, indent=1))


def load_split(path: str | Path, records: Sequence[QAPair]) -> dict[str, list[QAPair]]:
    """Re-apply a saved split to freshly loaded records (pairs missing from the tree are ignored)."""
    payload = json.loads(Path(path).read_text())
    by_id = {r.pair_id: r for r in records}
    return {n: [by_id[i] for i in payload[n] if i in by_id] for n in SPLIT_NAMES}
