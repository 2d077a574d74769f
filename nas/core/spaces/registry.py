"""The named, versioned search spaces the service offers, as ``GET /v1/spaces`` lists them.

Keras-free: the API imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.core.spaces import codelab_v2 as codelab_v2_hyperparameters
from nas.core.spaces.hyperparameters import Hyperparameter
from nas.core.specs import ConvNetSpace


@dataclass(frozen=True)
class SpaceInfo:
    """One space: what it is, how a request narrows it, and its hyperparameters' defaults."""

    name: str
    version: int
    description: str
    narrowing: str
    hyperparameters: tuple[Hyperparameter, ...]


def _codelab_v1_hyperparameters() -> tuple[Hyperparameter, ...]:
    """Version 1's hyperparameters at its default keys (its keys change the bounds)."""
    space = ConvNetSpace()
    blocks = []
    for index in range(space.max_conv_blocks):
        # Blocks past the shallowest depth exist only in deeper models.
        deeper = tuple(range(index + 1, space.max_conv_blocks + 1))
        active_when = ("conv_blocks", deeper) if index >= space.min_conv_blocks else None
        blocks += [
            Hyperparameter(
                f"filters_{index}",
                "choice",
                space.filters[0],
                f"Filters of conv block {index + 1}.",
                choices=tuple(space.filters),
                active_when=active_when,
            ),
            Hyperparameter(
                f"one_by_one_{index}",
                "boolean",
                False,
                f"Whether a 1x1 conv with half the filters follows block {index + 1}'s 3x3 conv.",
                active_when=active_when,
            ),
        ]
    return (
        Hyperparameter(
            "conv_blocks",
            "int",
            space.min_conv_blocks,
            "Conv blocks, each halving the image by max pooling.",
            min=space.min_conv_blocks,
            max=space.max_conv_blocks,
            step=1,
        ),
        *blocks,
        Hyperparameter("head", "choice", space.heads[0], "The head.", choices=tuple(space.heads)),
        Hyperparameter(
            "dense_units",
            "choice",
            space.dense_units[0],
            "Width of the head's dense layer.",
            choices=tuple(space.dense_units),
            active_when=("head", ("flatten_dense", "gap_dense")),
        ),
        Hyperparameter(
            "learning_rate",
            "choice",
            space.learning_rates[0],
            "Adam's learning rate.",
            choices=tuple(space.learning_rates),
        ),
    )


SPACES: tuple[SpaceInfo, ...] = (
    SpaceInfo(
        name="codelab_convnet",
        version=1,
        description="The convnets of Google's 'Keras on TPU' flowers codelab: 3x3 conv blocks "
        "with optional 1x1 convs and max pooling, a head, Adam. A space without `version`.",
        narrowing="its own keys: min_conv_blocks, max_conv_blocks, filters, one_by_one_conv, "
        "heads, dense_units, learning_rates",
        hyperparameters=_codelab_v1_hyperparameters(),
    ),
    SpaceInfo(
        name="codelab_convnet",
        version=2,
        description="The codelab family with what makes small convnets work on small data: "
        "batch normalization, filter growth, strided convs, dropout, augmentation inside the "
        "model (training only), cosine decay, label smoothing. The default of a body without "
        "`space`.",
        narrowing='hyperparameters: {"NAME": {"fixed": v} | {"values": [...]} | '
        '{"min": a, "max": b}}',
        hyperparameters=codelab_v2_hyperparameters.HYPERPARAMETERS,
    ),
)
