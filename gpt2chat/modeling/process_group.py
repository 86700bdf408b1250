"""The processes of one training run over several machines (JAX backend only: KERAS_BACKEND=jax), one process per
machine, each on its own --devices:

    KERAS_BACKEND=jax python -m gpt2chat.train --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0
    (the same command on the other machine, with --process-id 1; or Keras' KERAS_DISTRIBUTION_* variables)

This module is who the processes are (:func:`from_argv`, :func:`processes`), how they join
(:func:`join`: ``keras.distribution.initialize``, which calls ``jax.distributed.initialize``; on CPUs JAX's
default collectives, gloo), and what they exchange so that all train alike. ``gpt2chat.modeling.distribute`` then
lays the devices of every process out as one mesh.

Every process runs the same program on its own devices, so whatever changes a variable must run in every process
with the same values. JAX checks that: a value assigned to a replicated variable is compared across processes
(``device_put``'s ``assert_equal``; measured: process 0 assigning alone hung until killed, and different values
fail "not the same on each process"). So each process feeds only its own rows of each global batch
(:func:`local_part`), only process 0 reads and writes the run directory (checkpoints, preset, metrics; the others
may share its disk or not), and what the others need from it (the run state and a checkpoint to resume, the best
weights at the end) they receive from it over the same collectives (:func:`from_first_process`), then all load it
alike. Before the first step every process compares a digest of its settings and rows (:func:`check_same_run`).

Several machines on TensorFlow are refused (:func:`join`): Keras 3.15's fit fails under
MultiWorkerMirroredStrategy (``gpt2chat.modeling.distribute`` tells why).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import tempfile
from pathlib import Path

from gpt2chat import settings
from gpt2chat.modeling.distribute import DistributionError


@dataclasses.dataclass(frozen=True)
class Processes:
    """The processes of one training run, one per machine: ``coordinator`` is process 0's HOST:PORT (where the others
    join it), ``count`` processes in all, this one is ``index``. The default is a run of one process."""

    coordinator: str | None = None
    count: int = 1
    index: int = 0

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory: process 0 only."""
        return self.index == 0


# ------------------------------------------------------------------------------------- who the processes are

FLAGS = ("coordinator", "num_processes", "process_id")


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a run over several processes (machines), which are not training settings: they are not saved,
    and a run resumes on any number of processes (the global batch stays --batch-size)."""
    group = parser.add_argument_group(
        "several machines (JAX backend: KERAS_BACKEND=jax; the same command on each, but --process-id)")
    group.add_argument("--coordinator", default=argparse.SUPPRESS, metavar="HOST:PORT",
                       help=f"process 0's address, where the others join it (or ${settings.JOB_ADDRESSES_ENV})")
    group.add_argument("--num-processes", type=int, default=argparse.SUPPRESS, metavar="P",
                       help=f"processes in the run, one per machine, each on its --devices "
                            f"(or ${settings.NUM_PROCESSES_ENV}; default 1)")
    group.add_argument("--process-id", type=int, default=argparse.SUPPRESS, metavar="I",
                       help=f"this process: 0 (which writes --output) to P-1 (or ${settings.PROCESS_ID_ENV})")


_FLAGS = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
_FLAGS.add_argument("--coordinator")
_FLAGS.add_argument("--num-processes", type=int)
_FLAGS.add_argument("--process-id", type=int)


def from_argv(argv: list[str] | None, environment=None) -> Processes:
    """The :class:`Processes` of a command line's flags (:func:`add_flags`), each missing one taken from Keras'
    variables (``settings.keras_distribution()``); :class:`DistributionError` when they do not make a run."""
    flags = _FLAGS.parse_known_args(argv)[0]
    return processes(flags.coordinator, flags.num_processes, flags.process_id,
                     settings.keras_distribution() if environment is None else environment)


def processes(coordinator: str | None = None, count: int | None = None, index: int | None = None,
              environment: tuple[str | None, str | None, str | None] = (None, None, None)) -> Processes:
    """The :class:`Processes` of the flags, each missing one taken from ``environment``
    (``settings.keras_distribution()``: Keras' ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``..._NUM_PROCESSES``,
    ``..._PROCESS_ID``). Job addresses may list every process's address, as Keras allows: the first is the
    coordinator."""
    names = ["--coordinator", "--num-processes", "--process-id"]  # as the errors name them
    values = [coordinator, count, index]
    variables = (settings.JOB_ADDRESSES_ENV, settings.NUM_PROCESSES_ENV, settings.PROCESS_ID_ENV)
    for position, fallback in enumerate(environment):
        if values[position] is None and fallback is not None:
            values[position], names[position] = fallback, f"${variables[position]}"
    coordinator, count, index = values
    try:
        count = 1 if count is None else int(count)
        index = 0 if index is None else int(index)
    except ValueError:
        raise DistributionError(f"{names[1]} and {names[2]} must be whole numbers") from None
    if count < 1 or not 0 <= index < count:
        raise DistributionError(f"{names[2]} {index} must be at least 0 and below {names[1]} {count}")
    if count == 1:
        return Processes()
    coordinator = (coordinator or "").split(",")[0].strip()
    if not re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", coordinator):
        raise DistributionError(f"{names[1]} {count} needs {names[0]} HOST:PORT, process 0's address (the same on "
                                "every process)")
    return Processes(coordinator, count, index)


# ------------------------------------------------------------------------------------------------ joining

def join(processes: Processes) -> None:
    """Join the other processes through ``keras.distribution.initialize`` (``jax.distributed.initialize``), which
    waits for all of them (JAX's default: up to 300 s); nothing for one process. Must run before the backend
    starts its runtime. On TensorFlow several processes are refused, naming the JAX route."""
    if processes.count == 1:
        return
    import keras

    if keras.config.backend() != "jax":
        raise DistributionError(f"--num-processes {processes.count} needs the JAX backend (pip install jax; "
                                "KERAS_BACKEND=jax): Keras 3.15's fit fails under TensorFlow's "
                                "MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388)")
    try:
        keras.distribution.initialize(processes.coordinator, processes.count, processes.index)
    except Exception as error:  # jax raises RuntimeError or its own XlaRuntimeError, with a multi-line status
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise DistributionError(f"process {processes.index} of {processes.count} could not join "
                                f"{processes.coordinator}: {reason}") from None


def process_count() -> int:
    """Processes training together (1 unless :func:`join` joined several, JAX only)."""
    import keras

    if keras.config.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


# ---------------------------------------------------------------------------------- what they exchange

def local_part(batch, replicas: int):
    """This process's rows of global batch ``batch`` (NumPy ``(inputs, targets, weights)``) on JAX, where each
    process feeds its own block of consecutive rows and ``fit`` assembles the global batch from them
    (``jax.make_array_from_process_local_data``). A batch that does not split over the ``replicas`` data-parallel
    replicas (a last, smaller validation batch) is first completed with copies of its first rows at weight 0:
    they add nothing to the per-answer-token loss or metric (copies, not empty rows: a row with no token to attend
    to would give NaN logits, and NaN x 0 is NaN)."""
    import numpy as np

    inputs, targets, weights = batch
    missing = -len(targets) % replicas
    if missing:
        extra = np.resize(np.arange(len(targets)), missing)
        inputs = {name: np.concatenate([value, value[extra]]) for name, value in inputs.items()}
        targets = np.concatenate([targets, targets[extra]])
        weights = np.concatenate([weights, np.zeros_like(weights[extra])])
    count = process_count()
    if count == 1:
        return inputs, targets, weights
    import jax

    share = len(targets) // count
    rows = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
    return {name: value[rows] for name, value in inputs.items()}, targets[rows], weights[rows]


_CHUNK = 1 << 26  # bytes per broadcast: 64 MiB, well inside the int32 sizes of JAX's default arrays


def from_first_process(payload: bytes | None) -> bytes | None:
    """``payload`` as process 0 has it (None too), in every process: how the others receive a checkpoint or the
    run state that only process 0 reads. One process: ``payload`` itself."""
    if process_count() == 1:
        return payload
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    first = jax.process_index() == 0
    size = -1 if payload is None else len(payload)
    high, low = (int(v) for v in multihost_utils.broadcast_one_to_all(
        np.array([size >> 31, size & 0x7FFFFFFF] if first else [0, 0], np.int32)))
    size = (high << 31) | low if high >= 0 else -1
    if size < 0:
        return None
    parts = []
    for start in range(0, size, _CHUNK):
        length = min(_CHUNK, size - start)
        chunk = np.frombuffer(payload, np.uint8, length, start) if first else np.zeros(length, np.uint8)
        parts.append(np.asarray(multihost_utils.broadcast_one_to_all(chunk)).tobytes())
    return b"".join(parts)


def same_in_every_process(value: bytes) -> bool:
    """Whether every process holds the same ``value`` (a digest: the same length everywhere); every process gets the
    same answer, so all can stop alike. One process: True."""
    if process_count() == 1:
        return True
    import numpy as np
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(np.frombuffer(value, np.uint8)))
    return bool((gathered == gathered[0]).all())


def state_from_first(state: dict | None, processes: Processes) -> dict | None:
    """The run state (``RunDirectory.load_state``) that process 0 read, in every process (None: a fresh run)."""
    if processes.count == 1:
        return state
    return json.loads(from_first_process(json.dumps(state).encode()))


@contextlib.contextmanager
def weights_everywhere(path: Path, processes: Processes):
    """``path``, a weights file of process 0's run directory, as a file every process can load (None when process
    0 has none): the others receive its bytes from process 0 (:func:`from_first_process`), since each process must
    load the same values and only process 0 may read the run directory."""
    if processes.count == 1:
        yield path if path.exists() else None
        return
    payload = from_first_process(path.read_bytes() if processes.writes and path.exists() else None)
    if payload is None or processes.writes:
        yield None if payload is None else path
        return
    with tempfile.TemporaryDirectory(prefix="gpt2chat-weights-") as folder:
        copy = Path(folder) / path.name
        copy.write_bytes(payload)
        yield copy


def digest(run_settings: dict, *packed) -> bytes:
    """What every process of a run must share: its settings (but where it reads and writes) and the rows it built
    (``PackedTokens``). A process with other rows would feed its part of other batches, silently: the run would not
    be one device's."""
    import hashlib

    import numpy as np

    shared = {name: value for name, value in run_settings.items() if name not in ("output", "data")}
    digest = hashlib.sha256(json.dumps(shared, sort_keys=True).encode())
    for rows in packed:
        for array in (rows.rows, rows.weights, rows.targets):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


def check_same_run(processes: Processes, run_settings: dict, *packed) -> None:
    """Stop every process alike, in one line, unless all hold the same settings and rows (:func:`digest`)."""
    if processes.count > 1 and not same_in_every_process(digest(run_settings, *packed)):
        raise ValueError(f"process {processes.index}: the {processes.count} processes differ in their settings or "
                         "training rows; run the same command on each (only --output, --data and --process-id may "
                         "differ) on the same MedQuAD")
