"""The hyperparameters of version 2 of the codelab convnet space, with the defaults it starts from.

The defaults are one good small convnet for small data (four blocks growing 32 to 256 filters,
batch normalization, augmentation, dropout before a global-average-pooling head, cosine decay,
label smoothing), so that the first trial of a search is already a sound model.
"""

from __future__ import annotations

from nas.core.spaces.hyperparameters import Hyperparameter

DENSE_HEADS = ("flatten_dense", "gap_dense")
MAX_CONV_BLOCKS = 6
MAX_FILTERS = 512


def block_filters(base_filters: int, filter_growth: float, block: int) -> int:
    """The filters of conv block ``block`` (from 0)."""
    return min(round(base_filters * filter_growth**block), MAX_FILTERS)


def _augmentation(name: str, default: float, most: float, description: str) -> Hyperparameter:
    """The strength of one random augmentation, in steps of 0.05 from 0 (off)."""
    return Hyperparameter(
        name,
        "float",
        default,
        description,
        min=0.0,
        max=most,
        step=0.05,
        active_when=("augmentation", (True,)),
    )


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter(
        "conv_blocks",
        "int",
        4,
        "Conv blocks; each halves the image.",
        min=2,
        max=MAX_CONV_BLOCKS,
        step=1,
    ),
    Hyperparameter(
        "base_filters", "choice", 32, "Filters of the first block.", choices=(16, 24, 32, 48, 64)
    ),
    Hyperparameter(
        "filter_growth",
        "choice",
        2.0,
        "Each block has this many times the filters of the one before (at most 512).",
        choices=(1.0, 1.5, 2.0),
    ),
    Hyperparameter("batch_norm", "boolean", True, "Batch normalization after every conv."),
    Hyperparameter(
        "one_by_one_conv",
        "boolean",
        False,
        "The codelab's alternation: a 1x1 conv with half the filters after each 3x3 conv.",
    ),
    Hyperparameter(
        "downsampling",
        "choice",
        "max_pool",
        "How a block halves the image: 2x2 max pooling or a strided 3x3 conv.",
        choices=("max_pool", "strided_conv"),
    ),
    Hyperparameter(
        "head",
        "choice",
        "gap",
        "Global average pooling, optionally with a dense layer, or flatten and a dense layer.",
        choices=("gap", "gap_dense", "flatten_dense"),
    ),
    Hyperparameter(
        "dense_units",
        "choice",
        128,
        "Width of the head's dense layer.",
        choices=(64, 128, 256, 512),
        active_when=("head", DENSE_HEADS),
    ),
    Hyperparameter(
        "dropout", "float", 0.3, "Dropout rate before the head.", min=0.0, max=0.6, step=0.1
    ),
    Hyperparameter(
        "augmentation",
        "boolean",
        True,
        "Random flips, rotations, zooms and contrast while training (never at inference).",
    ),
    _augmentation("rotation", 0.05, 0.2, "Largest random rotation, as a fraction of a full turn."),
    _augmentation("zoom", 0.1, 0.3, "Largest random zoom in or out, as a fraction of the side."),
    _augmentation("contrast", 0.1, 0.3, "Largest random contrast change."),
    Hyperparameter(
        "learning_rate",
        "float",
        2e-3,
        "Adam's initial learning rate.",
        min=1e-4,
        max=1e-2,
        log=True,
    ),
    Hyperparameter(
        "lr_schedule",
        "choice",
        "cosine",
        "Constant, or cosine decay to zero over the trial's training steps.",
        choices=("constant", "cosine"),
    ),
    Hyperparameter(
        "label_smoothing",
        "choice",
        0.1,
        "Label smoothing of the cross-entropy loss.",
        choices=(0.0, 0.1, 0.2),
    ),
)

#: ``space.hyperparameters`` of a request that pins what trains well on small data (batch
#: norm, augmentation, cosine decay, label smoothing, 4 blocks of 32 to 256 filters) and
#: searches the head, dropout and learning rate: a short search's space.
SMALL_DATA_FOCUS = {
    "conv_blocks": {"fixed": 4},
    "base_filters": {"fixed": 32},
    "filter_growth": {"fixed": 2.0},
    "batch_norm": {"fixed": True},
    "one_by_one_conv": {"fixed": False},
    "downsampling": {"fixed": "max_pool"},
    "head": {"values": ["gap", "gap_dense"]},
    "dense_units": {"fixed": 128},
    "dropout": {"values": [0.2, 0.3]},
    "augmentation": {"fixed": True},
    "learning_rate": {"min": 1e-3, "max": 3e-3},
    "lr_schedule": {"fixed": "cosine"},
    "label_smoothing": {"fixed": 0.1},
}
