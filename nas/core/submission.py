"""Checks a search request against the machine before it may enter the queue."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nas.core.dataset_checks import check_dataset
from nas.core.errors import field_error
from nas.core.spaces.limits import fitted_to_image, min_image_size
from nas.core.specs import SearchSpec


def check_submission(
    spec: SearchSpec,
    data_roots: list[Path],
    data_buckets: Sequence[str] = (),
    max_entries: int | None = None,
) -> SearchSpec:
    """The spec with its dataset paths made absolute and a default depth range fitted to
    the image, or a 422 naming what is wrong; at most ``max_entries`` folder entries are
    listed to check its dataset."""
    space = fitted_to_image(spec.space, spec.dataset.image_size)
    smallest = min_image_size(space)
    if spec.dataset.image_size < smallest:
        raise field_error(
            ("dataset", "image_size"),
            f"{spec.space.depth_field} asks for {space.deepest_conv_blocks} downsampling "
            f"blocks, which need images of at least {smallest} px; raise image_size or allow "
            "fewer conv blocks",
            spec.dataset.image_size,
        )
    dataset = check_dataset(spec.dataset, data_roots, data_buckets, max_entries)
    return spec.model_copy(update={"dataset": dataset, "space": space})
