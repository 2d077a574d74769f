"""How large a model a search may build, scaled with its data.

A model far larger than its photos can teach (ten million parameters for 2,000 photos at
64 px) spends its trial at chance level. Unless the request widened the space's widths, a
search's models are capped at ``PARAMS_PER_TRAINING_IMAGE`` parameters per training photo
(times the image side over 64 px), and at ``FLOPS_PER_PIXEL`` forward FLOPs per input pixel;
never under floors that keep the space's default model, never over the operator's caps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas.core.specs import SpaceSpec

PARAMS_PER_TRAINING_IMAGE = 1_000
#: Version 2's default model has about 0.4 million parameters and 30,000 FLOPs per pixel.
PARAMS_FLOOR = 1_000_000
FLOPS_PER_PIXEL = 60_000
#: The keys of a space that widen its models; a request that sets one chose its own bounds.
WIDTH_KEYS = {
    1: ("filters", "dense_units"),
    2: ("base_filters", "filter_growth", "dense_units"),
}


@dataclass(frozen=True)
class ModelBounds:
    """The most parameters and forward FLOPs per image of a search's models, and whether
    they were scaled to the data (else the operator's caps)."""

    max_params: int
    max_flops: int
    scaled_to_data: bool

    def as_dict(self) -> dict[str, Any]:
        """What the search records."""
        return asdict(self)


def widths_set_by_request(space: SpaceSpec) -> bool:
    """Whether the request set any of the space's widths itself."""
    keys = WIDTH_KEYS[space.version]
    if space.version == 1:
        return any(key in space.model_fields_set for key in keys)
    return any(key in space.hyperparameters for key in keys)  # type: ignore[union-attr]


def model_bounds(
    space: SpaceSpec,
    *,
    train_images: int,
    image_size: int,
    limit_max_params: int,
    limit_max_flops: int,
) -> ModelBounds:
    """The caps on the models of a search of ``space`` on ``train_images`` photos."""
    if widths_set_by_request(space):
        return ModelBounds(limit_max_params, limit_max_flops, scaled_to_data=False)
    params = PARAMS_PER_TRAINING_IMAGE * train_images * max(1.0, image_size / 64)
    return ModelBounds(
        max_params=min(limit_max_params, max(PARAMS_FLOOR, int(params))),
        max_flops=min(limit_max_flops, FLOPS_PER_PIXEL * image_size * image_size),
        scaled_to_data=True,
    )
