"""Reader and writer of the IDX file format of (Fashion-)MNIST, plain or gzipped.

An IDX file is a 4-byte magic number ``0x00 0x00 TYPE NDIM``, then ``NDIM``
big-endian uint32 sizes, then the array in C order (big-endian for multi-byte
types).  Fashion-MNIST ships ``train-images-idx3-ubyte.gz`` (uint8,
``(60000, 28, 28)``) and ``train-labels-idx1-ubyte.gz`` (uint8, ``(60000,)``),
and the same for ``t10k``.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "write_idx"]

#: IDX type byte -> big-endian numpy dtype
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open(path: Path, mode: str):
    return gzip.open(path, mode) if path.suffix == ".gz" else open(path, mode)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX (or ``.idx.gz``) file into a native-endian array.

    Raises
    ------
    ValueError
        If the header is malformed or the payload size does not match it.
    """
    p = Path(path)
    with _open(p, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise ValueError(f"{p}: not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{p}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_TYPES[data[2]])
    # Python integers: a crafted header's product of up to 255 uint32 sizes must not
    # wrap around in int64 (2^31 * 2^31 * 4 = 2^64 -> 0 would pass an empty payload)
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{p}: IDX payload has {len(data) - header} bytes, header {shape} "
            f"of {dtype} needs {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    arr = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(
            f"array dtype {arr.dtype} has no IDX type; valid: {', '.join(str(d) for d in codes)}"
        )
    code = codes[native]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with _open(Path(path), "wb") as fh:
        fh.write(header + np.ascontiguousarray(arr, dtype=_TYPES[code]).tobytes())
