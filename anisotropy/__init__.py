"""anisotropy: partial local entropy - loss smoothing restricted to chosen
layers of a neural network, and the tools to study it.

Data flows one way: kernels -> smoothing -> training -> io (run logs) ->
analysis -> figures.

The public names are listed once, in ``__init__.pyi`` (read by static tools);
``lazy_loader`` imports each on first use, so that numpy-only work such as
``anisotropy limits`` or the cooling analysis does not pay for importing torch.
"""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, _names = _lazy.attach_stub(__name__, __file__)
__all__ = [*_names, "__version__"]
