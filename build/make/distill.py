"""Quantization-aware training towards the float model's own predictions (knowledge distillation).

Trained on the labels alone, QAT is free to settle anywhere that scores as well, so the int8 file can
keep the float model's balanced accuracy while ranking another class first for many images. Mixing
the float model's probabilities into the target asks the quantized model to reproduce the float
model, which is what the parity gate measures. The price: label QAT also keeps training the model,
which helps an under-trained float model, and distillation gives that up (``qat.distillation``
defaults to 0; the README has both measurements).
"""

from __future__ import annotations

from models.keras import keras, tf


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
