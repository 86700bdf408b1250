"""The model that ``fit`` trains: the causal LM loaded from a preset or built, AdamW on its cosine schedule, and
the loss and metric that count answer tokens only."""

from __future__ import annotations

import contextlib

from gpt2chat.modeling import distribute
from gpt2chat.modeling.training_config import TrainConfig


def _load_or_build(config: TrainConfig):
    from gpt2chat.modeling.model import build_causal_lm, load_preset

    if config.preset:
        causal_lm = load_preset(config.preset)
        if config.lora_rank:
            causal_lm.backbone.enable_lora(config.lora_rank)
    else:
        causal_lm = build_causal_lm(config.size, config.sequence_length, dropout=config.dropout)
    limit = causal_lm.backbone.max_sequence_length
    if config.sequence_length > limit:
        raise ValueError(f"--sequence-length {config.sequence_length} exceeds the model's context of {limit}")
    causal_lm.preprocessor.sequence_length = max(causal_lm.preprocessor.sequence_length, config.sequence_length)
    return causal_lm


def build_training_model(config: TrainConfig, strategy=None):
    """(causal_lm, training_model): the task that is saved as the preset, and the model that ``fit`` trains,
    with their variables replicated by ``strategy`` when one is given (``distribute.strategy``).

    The training model is a plain functional model over the same layers: Keras' own fit feeds NumPy batches on
    every backend, whereas Keras-Hub's task fit routes them through tf.data or grain."""
    import keras

    with strategy.scope() if strategy else contextlib.nullcontext():
        causal_lm = _load_or_build(config)
        training_model = keras.Model(causal_lm.inputs, causal_lm.outputs, name="gpt2_training")
        compile_for_training(training_model, config)
    return causal_lm, training_model


def compile_for_training(training_model, config: TrainConfig) -> None:
    """AdamW, the cosine schedule and the per-answer-token loss; call it in the strategy's scope if there is one.
    The learning rate belongs to the global batch (--batch-size), which stays the same on any number of devices,
    so nothing is rescaled: N devices take the steps one device would."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.steps - config.warmup_steps,
        alpha=0.1,
    )
    replicated = distribute.replicas() > 1
    adamw = distribute.summed_before_clipping(keras.optimizers.AdamW) if replicated else keras.optimizers.AdamW
    optimizer = adamw(
        learning_rate=schedule, weight_decay=config.weight_decay, beta_2=0.95, global_clipnorm=1.0
    )
    # Decaying norms, biases and embeddings hurts small models; GPT-2 practice decays matrices only.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    training_model.compile(
        optimizer=optimizer,
        loss=_answer_token_cross_entropy()(),
        weighted_metrics=[_answer_token_loss()()],
        jit_compile=not replicated,  # see gpt2chat.modeling.distribute: XLA cannot compile a multi-device step
    )


def _weighted_cross_entropy(y_true, y_pred, sample_weight):
    """(cross-entropy summed over weighted (answer) tokens, the sum of their weights)."""
    import keras

    losses = keras.losses.sparse_categorical_crossentropy(y_true, keras.ops.cast(y_pred, "float32"),
                                                          from_logits=True)
    weights = keras.ops.ones_like(losses) if sample_weight is None else keras.ops.cast(sample_weight, "float32")
    return keras.ops.sum(losses * weights), keras.ops.sum(weights)


def _answer_token_cross_entropy():
    import keras

    class AnswerTokenCrossEntropy(keras.losses.Loss):
        """The training loss: cross-entropy summed over the answer tokens of the whole batch / their number.

        Keras' default reduction divides a sample-weighted loss by every position, so the answer-only loss would
        be scaled by the share of answer tokens (~0.2) and the learning rate with it; and on several replicas it
        averages each replica's own mean. Here each replica returns its share of the global mean (its sum over
        the batch's answer-token count, summed over replicas): Keras sums the replicas' gradients, which then
        are the gradient of the whole batch's loss, as on one device."""

        def __init__(self, name="answer_token_cross_entropy", **kwargs):
            super().__init__(name=name, **kwargs)

        def __call__(self, y_true, y_pred, sample_weight=None):
            total, count = _weighted_cross_entropy(y_true, y_pred, sample_weight)
            return total / keras.ops.maximum(distribute.global_sum(count), 1.0)

    return AnswerTokenCrossEntropy


def _answer_token_loss():
    import keras

    class AnswerTokenLoss(keras.metrics.Metric):
        """Cross-entropy summed over weighted (answer) tokens / their number, over a whole epoch or evaluation:
        exact, where the loss Keras logs is a mean of per-batch means. Its variables are summed over replicas
        when read (Keras metric variables are on-read sums), so it is exact on several devices too."""

        def __init__(self, name="answer_loss", **kwargs):
            super().__init__(name=name, **kwargs)
            self.total = self.add_variable(shape=(), initializer="zeros", name="total")
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true, y_pred, sample_weight=None):
            total, count = _weighted_cross_entropy(y_true, y_pred, sample_weight)
            self.total.assign_add(total)
            self.count.assign_add(count)

        def result(self):
            return self.total / keras.ops.maximum(self.count, 1.0)

    return AnswerTokenLoss
