"""Safe .npz I/O: never unpickle (an npz holding objects is refused), write atomically."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np


class NpzError(ValueError):
    pass


def load(path: Path | str) -> dict[str, np.ndarray]:
    if Path(path).is_file() and not zipfile.is_zipfile(path):
        # np.load would treat it as a raw pickle; an .npz is always a zip archive.
        raise NpzError(f"{path}: not a readable .npz (not a zip archive)")
    try:
        with np.load(str(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise NpzError(f"{path}: no such file") from None
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise NpzError(f"{path}: holds pickled Python objects; refused (only plain numeric arrays are "
                           "read)") from None
        raise NpzError(f"{path}: not a readable .npz ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise NpzError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None
    bad = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if bad:  # numpy hands back raw bytes for a member without an .npy header
        raise NpzError(f"{path}: member {bad[0]!r} is not a numpy array")
    return arrays


def save(path: Path | str, arrays: dict[str, np.ndarray]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    os.replace(tmp, path)
