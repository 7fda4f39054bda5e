"""The package's public API: every name in ``__all__`` resolves, lazily for torch parts."""

import subprocess
import sys

import pytest

import anisotropy


@pytest.mark.parametrize("name", anisotropy.__all__)
def test_every_public_name_resolves(name):
    assert getattr(anisotropy, name) is not None


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no_such_thing"):
        anisotropy.no_such_thing  # noqa: B018


def test_kernels_import_without_torch():
    code = (
        "import sys, anisotropy; anisotropy.log_kernel([0.0], R=1.0); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
