"""Checks a search request against the machine before it may enter the queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError

from search_spaces.limits import min_image_size
from service.specs import SearchSpec
from worker.datasets import DatasetError, scan_folder


def field_problem(loc: tuple[str, ...], message: str, value: Any) -> dict[str, Any]:
    """One error of a 422 in FastAPI's own format, naming the field at ``loc`` of the body."""
    return {"type": "value_error", "loc": ("body", *loc), "msg": message, "input": value}


def field_error(loc: tuple[str, ...], message: str, value: Any) -> RequestValidationError:
    """A 422 naming the field at ``loc`` of the body."""
    return RequestValidationError([field_problem(loc, message, value)])


def resolve_inside_roots(
    raw_path: str, roots: list[Path], loc: tuple[str, ...] = ("dataset", "path")
) -> Path:
    """The path with symlinks resolved, if it lies inside a data root; else a 422 at ``loc``.

    The answer is the same whether or not an outside path exists (or cannot even be
    resolved), so the API cannot be used to probe the file system.
    """
    try:
        resolved = Path(raw_path).resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of links
        resolved = None
    if resolved is None or not _inside(resolved, roots):
        raise field_error(
            loc, "must lie inside one of the configured data roots (NAS_DATA_ROOTS)", raw_path
        )
    return resolved


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def check_submission(spec: SearchSpec, data_roots: list[Path]) -> SearchSpec:
    """The spec with its dataset path made absolute, or a 422 naming what is wrong."""
    smallest = min_image_size(spec.space)
    if spec.dataset.image_size < smallest:
        raise field_error(
            ("dataset", "image_size"),
            f"{spec.space.deepest_conv_blocks} downsampling blocks need images of at least "
            f"{smallest} px; raise image_size or allow fewer conv blocks in the space",
            spec.dataset.image_size,
        )
    path = resolve_inside_roots(spec.dataset.path, data_roots)
    try:
        scan = scan_folder(path, spec.dataset.max_images_per_class)
    except DatasetError as error:
        raise field_error(("dataset", "path"), str(error), spec.dataset.path) from None
    # Class folders or images may be links; none may lead out of the data roots.
    if not all(_inside(file.resolve(), data_roots) for file in scan.files):
        raise field_error(
            ("dataset", "path"),
            "holds links to files outside the configured data roots (NAS_DATA_ROOTS)",
            spec.dataset.path,
        )
    dataset = spec.dataset.model_copy(update={"path": str(path)})
    return spec.model_copy(update={"dataset": dataset})
