"""Replace a file atomically: write a uniquely named temporary file beside it, fsync, rename it into place.

Why one helper: a crash or a failed write must leave the previous file (or none), never a truncated one. The blob
store's local backend and the model cards both need exactly this; the caller picks the temporary name when it must
be recognisable (the blob store hides its own temporary files from listings by their prefix).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path


def write_atomically(path: Path, chunks: Iterable[bytes], temp_name: str | None = None) -> None:
    """Write ``chunks`` to ``path`` all at once or not at all (the temporary file is removed on any failure)."""
    path = Path(path)
    tmp = path.with_name(temp_name or f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
