"""Replace a folder of files all at once: write beside it, flush, then swap it in with renames.

A reader sees the old folder or the new one, never half of each. A crash between the two renames leaves
the old folder under ``.<name>.previous``, which ``restored`` puts back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk, so that a rename after it never publishes data still in the page cache."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def previous_of(folder: Path) -> Path:
    """Where the old folder waits while a new one is swapped in."""
    return folder.with_name(f".{folder.name}.previous")


@contextmanager
def replaced_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends without error its files replace ``folder`` whole.

    On an error the staging folder is removed and ``folder`` is left as it was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.saving-", dir=folder.parent))
    try:
        yield staging
        for path in staging.rglob("*"):
            _fsync(path)
        _fsync(staging)
        previous = previous_of(folder)
        if previous.exists():
            shutil.rmtree(previous)
        if folder.exists():
            os.rename(folder, previous)
        os.rename(staging, folder)
        _fsync(folder.parent)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def restored(folder: str | Path) -> Path:
    """``folder``, put back from ``.<name>.previous`` first if a swap was cut off between its two renames."""
    folder = Path(folder)
    previous = previous_of(folder)
    if not folder.exists() and previous.is_dir():
        os.rename(previous, folder)
    return folder
