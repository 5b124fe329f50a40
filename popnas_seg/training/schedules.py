"""The training recipe's optimizer and learning-rate schedule, from `training_hyperparameters`.

Cosine, cosine with restarts or constant, each with the same optional linear warm-up (`WarmupSchedule`, a
registered Keras serializable, so a saved model's optimizer loads back); AdamW, Adam or SGD with momentum.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="popnas_seg")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `target` over `warmup_steps`, then `after(step - warmup_steps)`.

    Keras's CosineDecay has its own warm-up but CosineDecayRestarts and a constant rate do not; one wrapper
    gives all three schedules the same warm-up.
    """

    def __init__(self, target: float, warmup_steps: int, after: Any) -> None:
        self.target = float(target)
        self.warmup_steps = int(warmup_steps)
        self.after = after

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        if callable(self.after):
            later = self.after(ops.maximum(step - self.warmup_steps, 0.0))
        else:
            later = ops.convert_to_tensor(float(self.after), dtype="float32")
        if self.warmup_steps <= 0:
            return later
        warm = self.target * (step + 1.0) / float(self.warmup_steps)
        return ops.where(step < self.warmup_steps, warm, ops.cast(later, "float32"))

    def get_config(self) -> dict[str, Any]:
        after = keras.optimizers.schedules.serialize(self.after) if callable(self.after) else self.after
        return {"target": self.target, "warmup_steps": self.warmup_steps, "after": after}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WarmupSchedule:
        after = config["after"]
        if isinstance(after, dict):
            after = keras.optimizers.schedules.deserialize(after)
        return cls(config["target"], config["warmup_steps"], after)


def make_schedule(hp: Any, steps_per_epoch: int, epochs: int) -> Any:
    """Learning-rate schedule of `training_hyperparameters` for a run of `epochs` x `steps_per_epoch` steps."""
    lr = float(hp.learning_rate)
    warmup = max(0, int(hp.warmup_epochs) * steps_per_epoch)
    total = max(1, epochs * steps_per_epoch)
    decay_steps = max(1, total - warmup)
    if hp.scheduler == "cosine":
        after: Any = keras.optimizers.schedules.CosineDecay(lr, decay_steps=decay_steps, alpha=0.0)
    elif hp.scheduler == "cosine_restarts":
        period = max(1, int(hp.restart_period_epochs) * steps_per_epoch)
        after = keras.optimizers.schedules.CosineDecayRestarts(lr, first_decay_steps=period, t_mul=1.0, m_mul=1.0)
    else:
        after = lr
    if warmup == 0:
        return after
    return WarmupSchedule(lr, warmup, after)


def make_optimizer(hp: Any, schedule: Any) -> keras.optimizers.Optimizer:
    """AdamW (decoupled weight decay), Adam (no weight decay: that is what distinguishes it from AdamW),
    or SGD with momentum and decoupled weight decay."""
    wd = float(hp.weight_decay) or None
    if hp.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=wd or 0.0)
    if hp.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=schedule)
    return keras.optimizers.SGD(learning_rate=schedule, momentum=float(hp.momentum), weight_decay=wd)
