"""The operator's caps on what one search may ask for (``NAS_LIMIT_*`` settings)."""

from __future__ import annotations

from nas.core.errors import InvalidRequestError, field_problem
from nas.core.settings import Settings
from nas.core.spaces.limits import fitted_to_image
from nas.core.spaces.parameter_counts import smallest_params
from nas.core.specs import SearchSpec


def check_caps(spec: SearchSpec, settings: Settings) -> None:
    """Raise a 422 naming every field of ``spec`` over its cap."""
    asked = {
        ("tuner", "max_trials"): (spec.tuner.max_trials, "limit_max_trials"),
        ("tuner", "epochs"): (spec.tuner.epochs, "limit_epochs"),
        ("tuner", "batch_size"): (spec.tuner.batch_size, "limit_batch_size"),
        ("dataset", "image_size"): (spec.dataset.image_size, "limit_image_size"),
    }
    problems = [
        field_problem(
            loc,
            f"must be at most {getattr(settings, name)} on this service (NAS_{name.upper()})",
            value,
        )
        for loc, (value, name) in asked.items()
        if value > getattr(settings, name)
    ]
    class_names = spec.dataset.class_names
    if class_names is not None and len(class_names) > settings.limit_classes:
        problems.append(
            field_problem(
                ("dataset", "class_names"),
                f"may name at most {settings.limit_classes} classes on this service "
                f"(NAS_LIMIT_CLASSES), not {len(class_names)}",
                len(class_names),
            )
        )
    planned = spec.tuner.planned_trials()
    if spec.tuner.algorithm == "hyperband" and planned > settings.limit_max_trials:
        problems.append(
            field_problem(
                ("tuner", "epochs"),
                f"hyperband with epochs={spec.tuner.epochs} and factor "
                f"{spec.tuner.hyperband_factor} plans {planned} trials, over this service's "
                f"{settings.limit_max_trials} (NAS_LIMIT_MAX_TRIALS); lower epochs or raise "
                "hyperband_factor",
                spec.tuner.epochs,
            )
        )
    space = fitted_to_image(spec.space, spec.dataset.image_size)
    # Two classes, the fewest a dataset has: the dataset is not looked at yet.
    fewest = smallest_params(space, spec.dataset.image_size, classes=2)
    if fewest > settings.limit_max_params:
        problems.append(
            field_problem(
                ("space",),
                f"every model of this space has at least {fewest:,} parameters at "
                f"{spec.dataset.image_size} px, over NAS_LIMIT_MAX_PARAMS "
                f"({settings.limit_max_params:,}); allow fewer filters, "
                "more conv blocks or a gap head, or lower image_size",
                spec.space.model_dump(mode="json", exclude_unset=True),
            )
        )
    if problems:
        raise InvalidRequestError(problems)
