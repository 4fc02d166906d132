"""Reader for the IDX format of MNIST-style datasets (gzip'd or plain)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> Tensor:
    """Read an IDX file into a tensor whose shape is the file's declared dimensions.

    Header: two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension (LeCun et al., the MNIST page).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_DTYPES[raw[2]])
    count = int(np.prod(dims))
    body = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return torch.from_numpy(body.astype(dtype.newbyteorder("="), copy=True).reshape(dims))
