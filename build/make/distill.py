"""Training towards a teacher's predictions (knowledge distillation): QAT towards the float model, and
the float model towards an ensemble of earlier runs (``train.teachers``).

Trained on the labels alone, QAT is free to settle anywhere that scores as well, so the int8 file can
keep the float model's balanced accuracy while ranking another class first for many images. Mixing
the float model's probabilities into the target asks the quantized model to reproduce the float
model, which is what the parity gate measures. The price: label QAT also keeps training the model,
which helps an under-trained float model, and distillation gives that up (``qat.distillation``
defaults to 0; the README has both measurements).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.keras import keras, tf

log = logging.getLogger(__name__)


class Distiller(keras.Model):
    """Trains ``student`` towards ``(1 - weight) * labels + weight * teacher(images)``.

    The teacher runs in inference mode on the same augmented batch and is never updated. Only the
    student's variables are trained, so a checkpoint of the student alone resumes the training.
    ``fit`` reports ``loss``, ``accuracy`` (against the labels) and ``agreement`` (top-1 with the
    teacher, on the training batches).
    """

    def __init__(self, student, teacher, weight: float):
        super().__init__(name="distiller")  # ``weight`` is checked where it is read: build.config.QatConfig
        self.student, self.teacher, self.weight = student, teacher, float(weight)
        self.loss_mean = keras.metrics.Mean(name="loss")
        self.label_accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
        self.agreement = keras.metrics.Mean(name="agreement")

    @property
    def metrics(self):
        return [self.loss_mean, self.label_accuracy, self.agreement]

    def call(self, images, training=False):
        return self.student(images, training=training)

    def train_step(self, data):
        images, labels = data
        taught = self.teacher(images, training=False)
        target = (1.0 - self.weight) * labels + self.weight * taught
        with tf.GradientTape() as tape:
            predicted = self.student(images, training=True)
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(target, predicted))
            if self.student.losses:
                loss += tf.add_n(self.student.losses)  # the head's L1/L2
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_mean.update_state(loss)
        self.label_accuracy.update_state(labels, predicted)
        same = tf.equal(tf.argmax(predicted, axis=-1), tf.argmax(taught, axis=-1))
        self.agreement.update_state(tf.cast(same, tf.float32))
        return {metric.name: metric.result() for metric in self.metrics}


def compiled_trainer(model, teacher, weight: float, optimizer) -> keras.Model:
    """What ``fit`` trains: ``model`` on the labels when ``weight`` is 0, else a :class:`Distiller` that
    also learns from ``teacher``. A checkpoint of ``model`` and ``optimizer`` resumes either."""
    if not weight:
        model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
        return model
    trainer = Distiller(model, teacher, weight)
    trainer.compile(optimizer=optimizer)
    return trainer


class MeanTeacher(keras.Model):
    """Several models as one teacher: the mean of their probabilities (an ensemble), never trained."""

    def __init__(self, members):
        super().__init__(name="teachers")
        self.members = list(members)
        for member in self.members:
            member.trainable = False

    def call(self, images, training=False):
        return tf.add_n([member(images, training=False) for member in self.members]) / len(self.members)


def load_teachers(model_config, num_classes: int, paths, *, fallback_shift: np.ndarray) -> keras.Model:
    """The teacher of ``train.teachers``: each file loaded into a model of ``model_config`` (as
    ``train.init_from`` loads it, without a decision shift), averaged by :class:`MeanTeacher`.

    Raises:
        FileNotFoundError: A teacher file does not exist.
        ValueError: A teacher file does not fit ``model_config`` and ``num_classes``.
    """
    from build.make.train import warm_start
    from models.classifier import build_model

    members = []
    for path in paths:
        member = build_model(model_config, num_classes)
        try:
            warm_start(member, Path(path), fallback_shift=fallback_shift)
        except (FileNotFoundError, ValueError) as error:
            raise type(error)(str(error).replace("train.init_from", "train.teachers")) from None
        members.append(member)
    log.info("float: distilling from the mean of %d teacher(s): %s", len(members), ", ".join(map(str, paths)))
    return MeanTeacher(members)
