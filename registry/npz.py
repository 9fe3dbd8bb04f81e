"""`.npz` bytes (what `numpy.load` reads) written for speed: floating-point arrays that would not
shrink stored as they are, every other array deflated.

`numpy.savez_compressed` deflates everything. Measured values with many digits barely shrink (a 1000x8
normal sample: 84 KB stored, 65 KB deflated) while deflating them was a fifth of a registration with
a reference sample. Others shrink many times over (one-hot columns, whole numbers, prices with two
decimals, masks, text), so a float array is deflated when its first 1 KB, deflated alone (~15 us),
shrinks by a tenth or more. Members carry a fixed date, so the same arrays always give the same bytes.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

#: The earliest date a zip member can carry: fixed, so that equal arrays make equal archives.
_DATE = (1980, 1, 1, 0, 0, 0)
#: Bytes of a float array deflated alone to judge whether the whole array is worth deflating.
_PROBE = 1024


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """The `.npz` archive of `arrays` (name -> array), never pickling anything."""
    import numpy as np

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in arrays.items():
            array = np.asanyarray(value)
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_DATE)
            member.compress_type = zipfile.ZIP_STORED if _incompressible(array) else zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, array, allow_pickle=False)
    return buffer.getvalue()


def _incompressible(array: Any) -> bool:
    """Whether `array` is floating-point and its first 1 KB would shrink by less than a tenth."""
    if array.dtype.kind != "f" or not array.size:
        return False
    head = array.reshape(-1)[: _PROBE // array.itemsize].tobytes()
    return len(zlib.compress(head, 1)) > 0.9 * len(head)
