"""QAT by distillation: the quantized model learns the float model's predictions, the float model stays."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("tensorflow_model_optimization", reason="QAT needs tensorflow-model-optimization")

from build.config import QatConfig  # noqa: E402
from build.make.distill import Distiller, MeanTeacher  # noqa: E402
from build.make.qat import apply_qat, quantize_aware  # noqa: E402
from build.make.context import prepare  # noqa: E402
from build.make.run import start_run  # noqa: E402
from build.make.train import train_float  # noqa: E402
from models.classifier import ModelConfig, build_model  # noqa: E402
from models.keras import keras, tf  # noqa: E402
from tests.build.make.test_train import read_log, tiny_config, write_synthetic_dataset  # noqa: E402

SMALL_CNN = ModelConfig(backbone="small_cnn", alpha=0.25, image_size=32, weights="none")


def _mean_kl(reference: np.ndarray, other: np.ndarray) -> float:
    return float(np.mean(np.sum(reference * (np.log(reference + 1e-7) - np.log(other + 1e-7)), axis=1)))


def _train(weight: float, student, teacher, images, labels, steps: int = 40):
    trainer = Distiller(student, teacher, weight)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16).repeat()
    return trainer.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0).history


def test_distillation_trains_the_quantized_model_towards_the_float_model_and_leaves_it_alone():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (64, 32, 32, 3)).astype(np.float32)
    teacher = build_model(SMALL_CNN, num_classes=3)
    # A teacher with confident, input-dependent opinions: its head trained on random labels.
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    teacher.fit(images, np.eye(3)[rng.integers(0, 3, 64)], epochs=15, batch_size=16, verbose=0)
    # Labels that disagree with the teacher everywhere: only distillation can follow the teacher.
    labels = np.eye(3)[(teacher.predict(images, verbose=0).argmax(axis=1) + 1) % 3].astype(np.float32)
    teacher_weights = [w.copy() for w in teacher.get_weights()]

    results = {}
    for weight in (0.0, 1.0):
        student = quantize_aware(teacher)  # a copy of the teacher under fake quantization
        history = _train(weight, student, teacher, images, labels)
        results[weight] = (
            _mean_kl(teacher.predict(images, verbose=0), student.predict(images, verbose=0)),
            history["agreement"][-1],
        )

    for kept, now in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(kept, now)  # the float model is never trained
    (labels_kl, labels_agreement), (distilled_kl, distilled_agreement) = results[0.0], results[1.0]
    assert distilled_kl < labels_kl / 5, results
    assert distilled_agreement > 0.9 > labels_agreement, results


def test_a_distillation_weight_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="qat.distillation must be between 0 and 1, got 1.5"):
        QatConfig(distillation=1.5)


@pytest.mark.slow
def test_qat_stage_distils_when_configured(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    config = tiny_config(write_synthetic_dataset(tmp_path / "data"), "train.epochs=1", "qat.distillation=1.0")
    run = start_run(tmp_path / "runs" / "distilled", config, resume=False)
    ctx = prepare(run, config)
    floated = train_float(ctx)
    float_path = floated.path
    float_bytes = float_path.read_bytes()

    path = apply_qat(ctx, floated).path

    assert path.is_file() and float_path.read_bytes() == float_bytes
    # The Distiller trained, reporting agreement with the teacher in the QAT progress lines.
    assert any("qat epoch 1/1" in r.getMessage() and "agreement" in r.getMessage() for r in caplog.records)
    rows = read_log(run.root / "qat" / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1] and np.isfinite(float(rows[0]["loss"]))


def test_a_mean_teacher_predicts_the_mean_of_its_members_probabilities():
    members = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        members.append(build_model(SMALL_CNN, 3))
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    expected = (members[0](images).numpy() + members[1](images).numpy()) / 2
    teacher = MeanTeacher(members)
    np.testing.assert_allclose(teacher(images).numpy(), expected, atol=1e-6)
    assert not teacher.trainable_variables


@pytest.mark.slow
def test_the_float_stage_distils_from_the_mean_of_earlier_runs(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = write_synthetic_dataset(tmp_path / "data")
    teachers = []
    for seed in (0, 1):
        config = tiny_config(data, "train.epochs=1", f"train.seed={seed}")
        run = start_run(tmp_path / "runs" / f"teacher{seed}", config, resume=False)
        train_float(prepare(run, config))
        teachers.append(str(run.root / "float" / "best.weights.npz"))
    config = tiny_config(data, "train.epochs=1", f"train.teachers={teachers!r}", "train.distillation=0.7")
    run = start_run(tmp_path / "runs" / "student", config, resume=False)

    result = train_float(prepare(run, config))

    assert any("mean of 2 teacher(s)" in r.getMessage() for r in caplog.records)
    assert any("float epoch 2/2" in r.getMessage() and "agreement" in r.getMessage() for r in caplog.records)
    assert result.schedule["teachers"] == teachers and result.schedule["distillation"] == 0.7
    rows = read_log(run.root / "float" / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(np.isfinite(float(r["loss"])) for r in rows)


def test_a_missing_teacher_file_is_named_with_the_setting_to_fix(tmp_path):
    config = tiny_config(
        write_synthetic_dataset(tmp_path / "data"),
        "train.teachers=['runs/gone/float/best.weights.npz']",
        "train.distillation=0.5",
    )
    run = start_run(tmp_path / "runs" / "student", config, resume=False)
    with pytest.raises(
        FileNotFoundError, match=r"train.teachers: runs/gone/float/best.weights.npz does not exist"
    ):
        train_float(prepare(run, config))
