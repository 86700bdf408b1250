"""Training on several devices, or several machines, through an existing engine: TensorFlow's ``tf.distribute``
on the project's backend (one machine), Keras' own distribution API when Keras runs on JAX (one or several).

    TensorFlow backend (the project's):
    one device, no TF_CONFIG      no strategy: the single-device path, XLA-compiled (unchanged)
    --devices N                   MirroredStrategy over N GPUs, or over N logical CPU devices on a CPU-only machine
                                  (a simulation: the cores are shared, so it is for correctness, not speed)
    TF_CONFIG naming 2+ tasks     refused: Keras 3's fit fails under MultiWorkerMirroredStrategy (below)
    --num-processes 2+            refused likewise, naming the JAX route (``process_group.join``)
    JAX backend (KERAS_BACKEND=jax, jax installed beside requirements.txt):
    --devices N                   keras.distribution.DataParallel over N devices
    --devices N --model-parallel M   keras.distribution.ModelParallel: a (N/M batch) x (M model) device mesh, every
                                  weight matrix split over M devices by ``model.gpt2_layout_map``
    --coordinator HOST:PORT --num-processes P --process-id I   (or Keras' KERAS_DISTRIBUTION_* variables)
                                  one process per machine, joined by ``process_group.join``, then the mesh
                                  above over the --devices of every process (P x N devices)

Why tf.distribute for data parallelism: the project runs Keras on TensorFlow; Keras 3.15's distribution API is
implemented for JAX only (its TensorFlow ``distribution_lib`` is a prototype marked "DO NOT USE" whose
``distribute_value`` is a TODO), so on TensorFlow there is no layout map and no model parallelism. Those need the
JAX backend, which this module sets up when Keras runs on it.

Several machines on TensorFlow: Keras 3.15's fit cannot train under MultiWorkerMirroredStrategy. Its per-step logs are
averaged with ``strategy.reduce("MEAN", value, axis=0)`` on scalars, which fails ("Invalid reduction dimension 0
for input with 0 dimensions", tensorflow/tensorflow#72388; reproduced here with two workers on localhost, after
first working around its symbolic build, which cannot average a dict of inputs). So a multi-task ``TF_CONFIG``
is refused with that reason instead of failing mid-start.

Several processes on JAX: who they are, how they join and what they exchange is
``gpt2chat.modeling.process_group``; here the devices of all of them are laid out as one mesh (:func:`setup`).

Three things Keras 3.15 does not do for us on this engine, each fixed here and checked by tests/test_train.py:

* the per-answer-token loss: Keras averages each replica's own mean, so a replica whose rows hold few answer
  tokens would weigh as much as one with many; :func:`global_sum` gives the loss the whole batch's count;
* global-norm clipping: Keras clips each replica's gradient before summing them (``BaseOptimizer.apply``, then
  the TensorFlow optimizer's ``_all_reduce_sum_gradients``); :func:`summed_before_clipping` sums first;
* the batches: each replica gets its own slice of the same global batch k (see :func:`distributed_batches`), so
  a run sees the rows of a one-device run, step for step.

XLA is off with a strategy: Keras compiles the whole multi-replica step as one XLA program, which cannot reach
the other devices' variables (measured: "Trying to access resource .../replica_1 located in device CPU:1 from
device CPU:0").
"""

from __future__ import annotations

import itertools
import json

from gpt2chat import settings



class DistributionError(ValueError):
    """Devices that cannot be set up as asked (too few GPUs, TensorFlow already started, a bad TF_CONFIG)."""


def cluster_size(raw: str | None) -> int:
    """Tasks (machines) named in ``raw``, the value of ``$TF_CONFIG`` (``settings.tf_config``); 1 without it."""
    if not raw:
        return 1
    try:
        cluster = json.loads(raw)["cluster"]
        return sum(len(tasks) for name, tasks in cluster.items() if name in ("chief", "worker"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DistributionError(f"${settings.TF_CONFIG_ENV} is not a JSON object with a 'cluster' of workers") from None


def setup(devices: int, model_parallel: int = 1, cluster: str | None = None):
    """Set up ``devices`` local devices for the backend Keras runs on (in each process, after
    ``process_group.join``); returns the ``tf.distribute`` strategy on TensorFlow (None for one device and no
    cluster), None on JAX (where the Keras distribution is set globally). ``cluster``: ``$TF_CONFIG``
    (``settings.tf_config``). Must run before the backend starts its runtime."""
    import keras

    if model_parallel < 1 or devices % model_parallel:
        raise DistributionError(f"--model-parallel {model_parallel} must divide --devices {devices}")
    if keras.config.backend() == "jax":
        _set_jax_distribution(devices, model_parallel)
        return None
    if model_parallel > 1:
        raise DistributionError("--model-parallel needs the JAX backend (KERAS_BACKEND=jax with jax installed): "
                                "Keras 3's layout maps are implemented for JAX only")
    return strategy(devices, cluster)


def _set_jax_distribution(devices: int, model_parallel: int) -> None:
    """The first ``devices`` devices of every process, in process order: a process's own devices stay together in
    the mesh, so its rows of a global batch are one contiguous block (``process_group.local_part``) and a model
    split over ``model_parallel`` devices is split within a machine."""
    import jax
    import keras

    by_process: dict[int, list] = {}
    for device in jax.devices():
        by_process.setdefault(device.process_index, []).append(device)
    local = by_process[jax.process_index()]
    if devices > len(local):
        raise DistributionError(f"--devices {devices}: JAX sees {len(local)} device(s) here (on a CPU, "
                                f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} simulates them)")
    chosen = [f"{device.platform}:{device.id}" for process in sorted(by_process)
              for device in by_process[process][:devices]]
    if len(chosen) == 1:
        return
    if model_parallel == 1:
        distribution = keras.distribution.DataParallel(devices=chosen)
    else:
        from gpt2chat.modeling.model import gpt2_layout_map

        mesh = keras.distribution.DeviceMesh((len(chosen) // model_parallel, model_parallel), ("batch", "model"),
                                             chosen)
        distribution = keras.distribution.ModelParallel(layout_map=gpt2_layout_map(mesh), batch_dim_name="batch")
    # Each process feeds its own rows (process_group.local_part); Keras' auto-sharding is for tf.data only.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)


def strategy(devices: int, cluster: str | None = None):
    """The ``tf.distribute`` strategy for ``devices`` local devices (None for one). Must run before
    TensorFlow starts its runtime: logical CPU devices and visible GPUs cannot change afterwards."""
    if devices < 1:
        raise DistributionError("--devices must be at least 1")
    if cluster_size(cluster) > 1:
        raise DistributionError(f"${settings.TF_CONFIG_ENV} names several machines, which Keras 3.15 cannot train on "
                                "with tf.distribute (tensorflow/tensorflow#72388); train on one machine's devices, "
                                "or on several with KERAS_BACKEND=jax and --num-processes (README: Training at "
                                "scale)")
    if devices == 1:
        return None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        if gpus:
            if devices > len(gpus):
                raise DistributionError(f"--devices {devices}: this machine has {len(gpus)} GPU(s)")
            tf.config.set_visible_devices(gpus[:devices], "GPU")
        else:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:  # "cannot be modified after being initialized"
        present = tf.config.list_logical_devices("GPU" if gpus else "CPU")
        if len(present) != devices:
            raise DistributionError(f"--devices {devices}: TensorFlow already started with {len(present)} device(s) "
                                    "in this process; start a new process") from None
    names = [device.name for device in tf.config.list_logical_devices("GPU" if gpus else "CPU")]
    return tf.distribute.MirroredStrategy(names[:devices])


def replicas() -> int:
    """Replicas training in step in the current strategy scope (1 outside one)."""
    import keras

    if keras.config.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def global_sum(value):
    """``value`` summed over every replica when called inside a replicated step; ``value`` itself otherwise."""
    if replicas() == 1:
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def summed_before_clipping(optimizer_class):
    """``optimizer_class`` whose gradients are summed over replicas before global-norm clipping, as one device
    would clip the whole batch's gradient. Keras 3.15 clips each replica's own gradient (``apply`` calls
    ``_clip_gradients`` before ``_backend_update_step`` all-reduces), which with ``global_clipnorm`` changes the
    update whenever a replica's gradient norm passes the limit."""

    class SummedBeforeClipping(optimizer_class):
        def _clip_gradients(self, grads):
            if replicas() > 1:
                present = [g for g in grads if g is not None]
                summed = iter(global_sum(present))
                grads = [None if g is None else next(summed) for g in grads]
            return super()._clip_gradients(grads)

        def _all_reduce_sum_gradients(self, grads_and_vars):
            return list(grads_and_vars)  # summed in _clip_gradients already

    SummedBeforeClipping.__name__ = optimizer_class.__name__
    return SummedBeforeClipping


def distributed_batches(strategy, batches, count: int, *, repeat: bool = False):
    """``batches`` (``batches[k]`` = global batch k as NumPy ``(inputs, targets, weights)``, k < ``count``) as a
    distributed dataset: every step, each replica receives its own contiguous slice of batch k (a last, smaller
    validation batch is split as evenly as it goes). ``repeat`` starts over after the last batch, for validation
    data that ``fit`` reads ``count`` steps at a time (it keeps one iterator when told the steps, and without them
    warns that the data "ran out"). The slices are built here (``distribute_datasets_from_function``), not
    left to TensorFlow's rebatching of a dataset, so which rows a replica gets is explicit."""
    import numpy as np
    import tensorflow as tf

    total = strategy.num_replicas_in_sync
    inputs, targets, weights = batches[0]

    def spec(array):
        return tf.TensorSpec((None, *array.shape[1:]), tf.int32 if array.dtype == bool else array.dtype)

    # int32, not bool: Keras builds the model from the first batch averaged over replicas, which bool cannot be
    def int32(array):
        return array.astype(np.int32) if array.dtype == bool else array

    def dataset_fn(context):
        local = total // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def generate():
            for k in itertools.cycle(range(count)) if repeat else range(count):
                x, y, w = batches[k]
                parts = np.array_split(np.arange(len(y)), total)
                for replica in range(first, first + local):  # consecutive elements go to consecutive replicas
                    rows = parts[replica]
                    yield {name: int32(value[rows]) for name, value in x.items()}, y[rows], w[rows]

        signature = ({name: spec(value) for name, value in inputs.items()}, spec(targets), spec(weights))
        return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(local)

    return strategy.distribute_datasets_from_function(dataset_fn)

