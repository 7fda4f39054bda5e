import os

import numpy as np
import pytest

# Tests share 2 cores with nothing else; one intra-op thread keeps timings stable.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)
