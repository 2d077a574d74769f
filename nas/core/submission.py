"""Checks a search request against the machine before it may enter the queue."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nas.core.dataset_checks import check_dataset
from nas.core.errors import field_error
from nas.core.spaces.limits import min_image_size
from nas.core.specs import SearchSpec


def check_submission(
    spec: SearchSpec,
    data_roots: list[Path],
    data_buckets: Sequence[str] = (),
    max_entries: int | None = None,
) -> SearchSpec:
    """The spec with its dataset paths made absolute, or a 422 naming what is wrong; at most
    ``max_entries`` folder entries are listed to check its dataset."""
    smallest = min_image_size(spec.space)
    if spec.dataset.image_size < smallest:
        raise field_error(
            ("dataset", "image_size"),
            f"{spec.space.deepest_conv_blocks} downsampling blocks need images of at least "
            f"{smallest} px; raise image_size or allow fewer conv blocks in the space",
            spec.dataset.image_size,
        )
    dataset = check_dataset(spec.dataset, data_roots, data_buckets, max_entries)
    return spec.model_copy(update={"dataset": dataset})
