"""FixRes in one run: the float model's last epochs at the release's input size, then QAT and the export there.

Training at a small input is cheaper per step, and random-resized crops show the network lesions larger
than a whole photo at the same size does, so the trained model scores best at a larger input (Touvron et
al. 2019; ``skinlesion sizes RUN`` measures it). With ``[fixres]`` set, the float stage trains at
``model.image_size`` and this stage (``fixres/``) continues from its best weights at ``fixres.image_size``;
every later stage reads the context this module derives::

    >>> floated = train_float(ctx)                   # float/ at model.image_size
    >>> ctx = release_context(ctx)                   # the release's size, float_stage "fixres"
    >>> floated = train_float(ctx)                   # fixres/: fixres.epochs from float/best.weights.npz
    >>> quantized = apply_qat(ctx, floated)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from build.config import BuildConfig, FixResConfig
from build.make.context import RunContext
from build.make.run import input_spec

FIXRES_STAGE = "fixres"


def release_config(config: BuildConfig, run_root: Path) -> BuildConfig:
    """The config of the stages after FixRes: ``config`` at ``fixres.image_size``, whose training is the
    FixRes epochs warm-started from the float stage's best weights (saved before the decision shift, as a
    warm start wants them). Its own ``fixres`` is off: it describes the stages, not the recipe."""
    fixres = config.fixres
    train = dataclasses.replace(
        config.train,
        head_epochs=0,
        epochs=fixres.epochs,
        learning_rate=fixres.learning_rate,
        warmup_epochs=0,
        init_from=str(run_root / "float" / "best.weights.npz"),
        augment=dataclasses.replace(config.train.augment, crop_area=fixres.crop_area),
    )
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, image_size=fixres.image_size),
        train=train,
        fixres=FixResConfig(),
    )


def release_context(ctx: RunContext) -> RunContext:
    """The context QAT and the export read: ``ctx`` itself without FixRes, else the same run and split at
    the release's input size, with the float model in ``fixres/`` (its images are decoded anew at that size)."""
    if not ctx.config.fixres.image_size:
        return ctx
    config = release_config(ctx.config, ctx.run.root)
    return RunContext(
        run=ctx.run,
        config=config,
        frame=ctx.frame,
        classes=ctx.classes,
        spec=input_spec(config),
        float_stage=FIXRES_STAGE,
        recipe=ctx.config,
    )
