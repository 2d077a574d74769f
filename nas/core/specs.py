"""What a user may ask for: the validated body of ``POST /v1/searches``.

These models import nothing heavy, so the API validates requests without Keras.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, ValidationError

from nas.core.errors import RestrictionError
from nas.core.spaces.codelab_v2 import HYPERPARAMETERS as CODELAB_V2_HYPERPARAMETERS
from nas.core.spaces.hyperparameters import Hyperparameter, Restriction

Head = Literal["flatten_dense", "gap", "gap_dense"]
Algorithm = Literal["asha", "random", "bayesian", "hyperband"]
Precision = Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]
Objective = Literal["val_accuracy", "val_loss", "accuracy", "loss"]
#: The class folders of the tf_flowers archive, sorted as a folder scan sorts them.
TF_FLOWERS_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
#: The keys of a dataset that say where its photos come from; a dataset has exactly one.
SOURCES = ("path", "tfrecords", "name")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DatasetSpec(_Strict):
    """Where the photos come from (exactly one of ``path``, ``tfrecords``, ``name``), how they
    are sized and how they are split into training, validation and test photos."""

    path: str | None = Field(None, min_length=1, description="Folder of class subfolders.")
    tfrecords: str | None = Field(
        None,
        min_length=1,
        description="Glob of TFRecord shards (features image: JPEG bytes, class: int64), "
        "local or gs://.",
    )
    name: Literal["tf_flowers"] | None = Field(
        None, description="A public dataset the worker downloads once."
    )
    class_names: list[str] | None = Field(
        None, min_length=2, description="Names of the TFRecord class indices (default 0..n-1)."
    )
    test_path: str | None = Field(
        None,
        min_length=1,
        description="Folder of class subfolders (the training classes) that no trial sees.",
    )
    test_split: float | None = Field(
        None, gt=0.0, lt=1.0, description="Share of each class held out as test photos."
    )
    image_size: int = Field(192, ge=16, le=512, description="Images are cropped to fill a square.")
    validation_split: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = Field(0, ge=0, description="Seed of the stratified test and validation splits.")
    max_images_per_class: int | None = Field(
        None, ge=2, description="Use at most this many images of each class (quick searches)."
    )

    # Field validators see the fields declared before theirs in ``info.data``: each conflict
    # is reported on the later field, so the 422 names it.
    @field_validator("tfrecords", "name")
    @classmethod
    def _one_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and any(info.data.get(key) for key in SOURCES):
            raise ValueError(f"give only one of {', '.join(f'dataset.{s}' for s in SOURCES)}")
        return value

    @field_validator("class_names")
    @classmethod
    def _names_of_tfrecords(cls, value: list[str] | None, info: ValidationInfo) -> list | None:
        if value is None:
            return None
        if not info.data.get("tfrecords"):
            raise ValueError("only TFRecord datasets take class_names (folders name their own)")
        if len(set(value)) != len(value) or not all(name.strip() for name in value):
            raise ValueError("class names must be distinct and not blank")
        return value

    @field_validator("test_split")
    @classmethod
    def _one_test_set(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("test_path"):
            raise ValueError("give dataset.test_path or dataset.test_split, not both")
        return value

    @model_validator(mode="after")
    def _some_source(self) -> DatasetSpec:
        if self.source is None:
            raise ValueError("give one of dataset.path, dataset.tfrecords or dataset.name")
        return self

    @property
    def source(self) -> str | None:
        """Which of ``path``, ``tfrecords`` and ``name`` gives the photos."""
        return next((key for key in SOURCES if getattr(self, key)), None)


def _distinct_sorted(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError("values must be distinct")
    return sorted(values)


class ConvNetSpace(_Strict):
    """Version 1 of the codelab convnet family: conv blocks, optional 1x1 convs, max pooling,
    a head. Its keys narrow it; a space without ``version`` is this one."""

    name: Literal["codelab_convnet"] = "codelab_convnet"
    version: Literal[1] = 1
    min_conv_blocks: int = Field(2, ge=1, le=8)
    max_conv_blocks: int = Field(6, ge=1, le=8)
    filters: list[int] = Field(default=[16, 32, 64, 128, 256], min_length=1)
    one_by_one_conv: list[bool] = Field(
        default=[False, True], min_length=1, description="Whether a 1x1 conv follows the 3x3."
    )
    heads: list[Head] = Field(default=["flatten_dense", "gap", "gap_dense"], min_length=1)
    dense_units: list[int] = Field(default=[64, 128, 256], min_length=1)
    learning_rates: list[float] = Field(default=[1e-3, 3e-3, 1e-2, 3e-4], min_length=1)

    @field_validator("filters", "dense_units")
    @classmethod
    def _positive_widths(cls, values: list[int]) -> list[int]:
        if any(not 1 <= value <= 2048 for value in values):
            raise ValueError("every width must be between 1 and 2048")
        return _distinct_sorted(values)

    @field_validator("learning_rates")
    @classmethod
    def _sane_rates(cls, values: list[float]) -> list[float]:
        # Order is kept: the first rate is the tuner's default (and the first one tried).
        if any(not 0.0 < value <= 1.0 for value in values):
            raise ValueError("every learning rate must be in (0, 1]")
        if len(set(values)) != len(values):
            raise ValueError("values must be distinct")
        return values

    @field_validator("one_by_one_conv", "heads")
    @classmethod
    def _distinct(cls, values: list) -> list:
        return _distinct_sorted(values)

    @model_validator(mode="after")
    def _ordered_depths(self) -> ConvNetSpace:
        if self.min_conv_blocks > self.max_conv_blocks:
            raise ValueError("min_conv_blocks must not exceed max_conv_blocks")
        return self

    @property
    def deepest_conv_blocks(self) -> int:
        """The most conv blocks a model of this space may have."""
        return self.max_conv_blocks

    @property
    def depth_field(self) -> str:
        """The key of the request that sets how deep this space goes."""
        user_set_max = "max_conv_blocks" in self.model_fields_set
        return "space.max_conv_blocks" if user_set_max else "space.min_conv_blocks"

    def with_depth_at_most(self, blocks: int) -> ConvNetSpace:
        """This space, its depth capped at ``blocks`` unless the request set the deepest."""
        if "max_conv_blocks" in self.model_fields_set or self.max_conv_blocks <= blocks:
            return self
        return self.model_copy(update={"max_conv_blocks": max(blocks, self.min_conv_blocks)})


Scalar = bool | int | float | str


class HyperparameterRange(_Strict):
    """Pins (``fixed``) or narrows (``values``, or ``min``/``max``) one hyperparameter."""

    fixed: Scalar | None = Field(None, description="The one value every trial uses.")
    values: list[Scalar] | None = Field(None, min_length=1, description="A subset of choices.")
    min: float | None = Field(None, description="A lower bound inside the space's bounds.")
    max: float | None = Field(None, description="An upper bound inside the space's bounds.")

    @model_validator(mode="after")
    def _one_kind(self) -> HyperparameterRange:
        kinds = [self.fixed is not None, self.values is not None]
        kinds.append(self.min is not None or self.max is not None)
        if sum(kinds) != 1:
            raise ValueError("give exactly one of fixed, values, or min and/or max")
        return self

    def restriction(self) -> Restriction:
        """The same request, as the search spaces take it."""
        values = tuple(self.values) if self.values is not None else None
        return Restriction(fixed=self.fixed, values=values, min=self.min, max=self.max)


class CodelabV2Space(_Strict):
    """Version 2 of the codelab convnet family (see ``nas.hypermodels.codelab_v2``): every
    hyperparameter has a default and can be pinned or narrowed under ``hyperparameters``."""

    name: Literal["codelab_convnet"] = "codelab_convnet"
    version: Literal[2] = 2
    hyperparameters: dict[str, HyperparameterRange] = Field(
        default_factory=dict,
        description='Per hyperparameter: {"fixed": v}, {"values": [...]} or {"min": a, "max": b}.',
    )

    @field_validator("hyperparameters")
    @classmethod
    def _inside_the_space(
        cls, ranges: dict[str, HyperparameterRange]
    ) -> dict[str, HyperparameterRange]:
        known = {item.name: item for item in CODELAB_V2_HYPERPARAMETERS}
        problems = []
        for name, asked in ranges.items():
            message = None
            if name not in known:
                message = f"{name!r} is not a hyperparameter of this space; it has {list(known)}"
            else:
                try:
                    known[name].restricted(asked.restriction())
                except RestrictionError as error:
                    message = str(error)
            if message is not None:
                problems.append(
                    {
                        "type": PydanticCustomError("value_error", message),
                        "loc": (name,),
                        "input": asked.model_dump(exclude_none=True),
                    }
                )
        if problems:
            raise ValidationError.from_exception_data("hyperparameters", problems)
        return ranges

    def resolved_hyperparameters(self) -> tuple[Hyperparameter, ...]:
        """The space's hyperparameters, pinned and narrowed as this request asks."""
        return tuple(
            item.restricted(self.hyperparameters[item.name].restriction())
            if item.name in self.hyperparameters
            else item
            for item in CODELAB_V2_HYPERPARAMETERS
        )

    @property
    def deepest_conv_blocks(self) -> int:
        """The most conv blocks a model of this space may have."""
        (depth,) = (item for item in self.resolved_hyperparameters() if item.name == "conv_blocks")
        return int(depth.max if depth.kind == "int" else max(depth.choices))

    @property
    def depth_field(self) -> str:
        """The key of the request that sets how deep this space goes."""
        return "space.hyperparameters.conv_blocks"

    def with_depth_at_most(self, blocks: int) -> CodelabV2Space:
        """This space, its depth capped at ``blocks`` unless the request set conv_blocks; the
        cap is written into ``hyperparameters``, so the stored spec shows the range used."""
        if "conv_blocks" in self.hyperparameters or self.deepest_conv_blocks <= blocks:
            return self
        (depth,) = (item for item in CODELAB_V2_HYPERPARAMETERS if item.name == "conv_blocks")
        fitted = HyperparameterRange(min=depth.min, max=max(blocks, depth.min))
        return self.model_copy(
            update={"hyperparameters": {**self.hyperparameters, "conv_blocks": fitted}}
        )


SpaceSpec = ConvNetSpace | CodelabV2Space
SPACE_VERSIONS: dict[int, type[ConvNetSpace] | type[CodelabV2Space]] = {
    1: ConvNetSpace,
    2: CodelabV2Space,
}


#: The most configurations a search may try, and the longest budget it may have (an extended
#: search's too), whatever the operator's caps allow.
MOST_TRIALS = 1000
MOST_BUDGET_SECONDS = 7 * 24 * 3600
#: Epochs per trial a budget plans when the body gives none: enough for a cosine schedule to
#: matter; the pruners and the budget end most trials before.
BUDGET_EPOCHS = 20
#: One trial planned per this many budget seconds (between 2 and BUDGET_MOST_TRIALS) when the
#: body gives no max_trials: the budget, not the count, is meant to end such a search.
BUDGET_SECONDS_PER_TRIAL = 30
#: The most configurations a budget plans: with ASHA's promotions (20 epochs: 3 rungs) that
#: is 86 trials, under the default NAS_LIMIT_MAX_TRIALS, so a body with only a long budget
#: is not refused for the trials it did not ask for.
BUDGET_MOST_TRIALS = 60


class TunerSpec(_Strict):
    """Which KerasTuner algorithm runs and with what budget."""

    algorithm: Algorithm = Field(
        "asha",
        description="asha (the default): asynchronous successive halving over epochs, "
        "promising trials resumed for more epochs; or random, bayesian, hyperband.",
    )
    max_trials: int = Field(
        10,
        ge=1,
        le=MOST_TRIALS,
        description="Configurations to try (asha: each starts at the first rung, and "
        "promotions run besides). Ignored by hyperband. Without it, a budget plans one trial "
        f"per {BUDGET_SECONDS_PER_TRIAL} s.",
    )
    epochs: int = Field(
        10,
        ge=1,
        le=1000,
        description="Epochs per trial (asha, hyperband: the most epochs). Without it, a budget "
        f"plans {BUDGET_EPOCHS}.",
    )
    batch_size: int = Field(32, ge=1, le=4096)
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="NumPy's and Python's generators take 32 bits."
    )
    hyperband_factor: int = Field(3, ge=2, le=10)
    patience: int | None = Field(
        5,
        ge=0,
        description="A trial stops after this many epochs without a better objective; "
        "0 or null never stops early.",
    )
    initial_points: int | None = Field(
        None, ge=1, description="Bayesian: random trials before the model guides the search."
    )
    precision: Precision = "auto"
    pruning: bool = Field(
        True,
        description="Stop hopeless trials early: one still at chance accuracy, and (random, "
        "bayesian) one whose best objective is below the median of earlier trials' by then.",
    )
    min_epochs_before_pruning: int = Field(
        3, ge=1, le=1000, description="Epochs a trial trains before a pruner may stop it."
    )
    warm_start: bool = Field(
        True,
        description="Try the best configurations of your earlier searches of the same photos "
        "at the same image size right after the space's defaults.",
    )
    max_parallel_trials: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Most trials of this search that run at once, over all workers; null: "
        "as many as workers offer (searches share the workers' slots in turn either way).",
    )

    def planned_trials(self) -> int:
        """How many trials the tuner will run if the space is not exhausted first."""
        if self.algorithm == "asha":
            return asha_trials(self.max_trials, self.epochs, ASHA_REDUCTION_FACTOR)
        if self.algorithm != "hyperband":
            return self.max_trials
        return hyperband_trials(self.epochs, self.hyperband_factor)


class BudgetSpec(_Strict):
    """A search's time budget: wall-clock seconds from the search's first start (an extended
    search's runs add up, the idle time between them not counted; the training seconds
    summed over its trials are recorded beside them)."""

    seconds: int = Field(
        ..., ge=10, le=MOST_BUDGET_SECONDS, description="Wall-clock seconds the search may run."
    )


def plan_for_budget(tuner: dict[str, Any], seconds: int) -> dict[str, Any]:
    """``tuner`` with the ``epochs`` and ``max_trials`` it leaves out planned for a budget."""
    planned = {
        "epochs": BUDGET_EPOCHS,
        "max_trials": min(BUDGET_MOST_TRIALS, max(2, seconds // BUDGET_SECONDS_PER_TRIAL)),
    }
    return planned | tuner


#: ASHA's reduction factor (eta): a rung promotes the top third of its results.
ASHA_REDUCTION_FACTOR = 3


def asha_rungs(max_epochs: int, factor: int, min_epochs: int = 1) -> list[int]:
    """The cumulative epochs of each ASHA rung, lowest first: ``max_epochs`` divided by
    ``factor`` as often as it stays at least ``min_epochs``, rounded up (as KerasTuner's
    Hyperband sizes its rounds), e.g. 27 -> [1, 3, 9, 27] and 10 -> [2, 4, 10]."""
    top = 0
    while max_epochs >= min_epochs * factor ** (top + 1):
        top += 1
    return [math.ceil(max_epochs / factor ** (top - rung)) for rung in range(top + 1)]


def asha_trials(configurations: int, max_epochs: int, factor: int) -> int:
    """Trials of an ASHA search of ``configurations`` that all finish: each rung above the
    first runs the top 1/factor of the one below."""
    total, reaching = 0, configurations
    for _ in asha_rungs(max_epochs, factor):
        total += reaching
        reaching //= factor
    return total


def hyperband_trials(max_epochs: int, factor: int) -> int:
    """Trials in one Hyperband iteration, counted the way KerasTuner's oracle schedules them."""
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    bracket0_end_size = math.ceil(1 + math.log(max_epochs, factor))
    total = 0
    for bracket in range(brackets):
        end_size = bracket0_end_size / (bracket + 1)
        total += sum(
            math.ceil(end_size * factor ** (bracket - round_num))
            for round_num in range(bracket + 1)
        )
    return total


class SearchSpec(_Strict):
    """The body of ``POST /v1/searches``: every key but the dataset's source has a default."""

    dataset: DatasetSpec
    space: SpaceSpec = Field(
        default=CodelabV2Space(),
        description="A search space; without `version` it is version 1, without `space` at "
        "all version 2 with its defaults.",
    )
    tuner: TunerSpec = TunerSpec()
    objective: Objective = "val_accuracy"
    export_top_k: int = Field(3, ge=1, le=20)
    final_top_k: int = Field(
        1,
        ge=0,
        le=20,
        description="The best architectures trained again from scratch on the training and "
        "validation photos once the search ends, exported and tested in their trials' place "
        "(at most export_top_k); 0 exports the trials' own models.",
    )
    defaults_margin: float = Field(
        1.0,
        ge=0.0,
        le=10.0,
        description="How many standard errors of the validation accuracy another "
        "architecture must beat the space's defaults (the first trial) by, at as many epochs, "
        "to be trained to the end and exported before them; 0: the best score comes first.",
    )

    budget: BudgetSpec | None = Field(
        None,
        description="A time budget; without tuner.max_trials and tuner.epochs, the service "
        "plans them to fit it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _planned_for_the_budget(cls, body: Any) -> Any:
        # Before validation, so the stored spec shows the trials and epochs planned.
        if not isinstance(body, dict) or not isinstance(body.get("budget"), dict):
            return body
        seconds, tuner = body["budget"].get("seconds"), body.get("tuner", {})
        if type(seconds) is not int or not isinstance(tuner, dict):
            return body  # the fields' own validation names what is wrong
        return body | {"tuner": plan_for_budget(tuner, seconds)}

    @field_validator("space", mode="before")
    @classmethod
    def _space_of_its_version(cls, space: Any) -> Any:
        # Validated by its version's model alone, so errors name the field and not the union.
        if not isinstance(space, dict):
            return space
        version = space.get("version", 1)
        model = None if isinstance(version, bool) else SPACE_VERSIONS.get(version)
        if model is None:
            problem = {
                "type": PydanticCustomError(
                    "value_error",
                    "unknown version; known: {known}",
                    {"known": list(SPACE_VERSIONS)},
                ),
                "loc": ("version",),
                "input": version,
            }
            raise ValidationError.from_exception_data("space", [problem])
        return model.model_validate(space)

    @property
    def maximize(self) -> bool:
        """Whether a higher objective is better."""
        return self.objective.endswith("accuracy")
