"""`.npz` bytes (what `numpy.load` reads) written for speed: floating-point arrays that would not
shrink stored as they are, every other array deflated.

`numpy.savez_compressed` deflates everything. Measured values with many digits barely shrink (a 1000x8
normal sample: 84 KB stored, 65 KB deflated) while deflating them was a fifth of a registration with
a reference sample. Others shrink many times over (one-hot columns, whole numbers, prices with two
decimals, masks, text), so a float array is deflated when its first 1 KB, deflated alone (~15 us),
shrinks by a tenth or more; deflating is at zlib's level 3 (its default, 6, was 3-10x slower).
Members carry a fixed date, so the same arrays always give the same bytes.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

#: The earliest date a zip member can carry: fixed, so that equal arrays make equal archives.
_DATE = (1980, 1, 1, 0, 0, 0)
#: zlib's level 3: 3-10x faster than its default (6) on one-hot and count columns, 5-20% larger
#: (level 1 was 1.8x larger on counts).
_LEVEL = 3
#: Bytes of a float array deflated alone to judge whether the whole array is worth deflating.
_PROBE = 1024


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """The `.npz` archive of `arrays` (name -> array), never pickling anything."""
    import numpy as np

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in arrays.items():
            array = np.asanyarray(value)
            npy = io.BytesIO()
            np.lib.format.write_array(npy, array, allow_pickle=False)
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_DATE)
            kind = zipfile.ZIP_STORED if _incompressible(array) else zipfile.ZIP_DEFLATED
            archive.writestr(member, npy.getbuffer(), compress_type=kind, compresslevel=_LEVEL)
    return buffer.getvalue()


def _incompressible(array: Any) -> bool:
    """Whether `array` is floating-point and its first 1 KB would shrink by less than a tenth."""
    if array.dtype.kind != "f" or not array.size:
        return False
    head = array.reshape(-1)[: _PROBE // array.itemsize].tobytes()
    return len(zlib.compress(head, 1)) > 0.9 * len(head)
