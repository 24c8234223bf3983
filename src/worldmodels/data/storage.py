"""Episodes on disk: one compressed .npz per episode, written atomically, checked when read.

Index t in an episode means: ``obs[t]`` is the frame the agent saw before acting, ``action[t]`` the action it
then took (encoded as the float vector M sees, see ``Adapter.encode_action``), and ``reward[t]``,
``terminated[t]``, ``truncated[t]`` what the env returned for that action. The frame after the last action is
not stored, so every array has the same length T. ``terminated`` is the env ending the episode (death, lap
done); ``truncated`` is the step limit. Only the last step can have either set.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from isal import isal_zlib

from worldmodels.errors import WorldModelsError

EPISODE_KEYS = ("obs", "action", "reward", "terminated", "truncated")
_NAME = re.compile(r"^ep_(\d{6,})\.npz$")


def episode_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"ep_{index:06d}.npz"


def episode_index(path: Path) -> int | None:
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_episodes(folder: Path) -> list[Path]:
    """Episode files in index order (temporaries and other names are not episodes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(episode_index(p), p) for p in folder.iterdir()]
    return [p for i, p in sorted((i, p) for i, p in found if i is not None)]


LEVEL = 2
"""ISA-L deflate level for episode files: about 4x faster than zlib's level 1 on Doom frames, files 2 % larger."""
_DOS_DATE = (0 << 9) | (1 << 5) | 1
"""1980-01-01 00:00 as every member's date, so the same arrays always give the same bytes."""
_MADE_BY = (3 << 8) | 20  # Unix (so the permission bits below mean something), zip spec 2.0


class DeflateStream:
    """One zip member's raw deflate stream, fed piece by piece (ISA-L, a standard deflate np.load reads)."""

    def __init__(self, level: int = LEVEL) -> None:
        self._z = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        self._parts: list[bytes] = []
        self.crc = 0
        self.size = 0

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        self.crc = isal_zlib.crc32(view, self.crc)
        self.size += view.nbytes
        self._parts.append(self._z.compress(view))

    def finish(self, prefix: bytes = b"") -> tuple[bytes, int, int]:
        """(deflated bytes, crc32, size) of prefix + everything written; prefix (an .npy header, known only
        at the end) goes first as a stored deflate block, which needs no recompression."""
        body = b"".join(self._parts) + self._z.flush()
        if not prefix:
            return body, self.crc, self.size
        if len(prefix) > 0xFFFF:
            raise ValueError("a stored deflate block holds at most 65535 bytes")
        stored = b"\x00" + struct.pack("<HH", len(prefix), len(prefix) ^ 0xFFFF) + prefix
        crc = isal_zlib.crc32_combine(isal_zlib.crc32(prefix), self.crc, self.size)
        return stored + body, crc, len(prefix) + self.size


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The .npy header np.save writes for a C-ordered array of this shape and dtype."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(n) for n in shape)}  # fmt: skip
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def deflate_array(value: np.ndarray, level: int = LEVEL) -> tuple[bytes, int, int]:
    value = np.ascontiguousarray(value)
    stream = DeflateStream(level)
    stream.write(value.reshape(-1).view(np.uint8))
    return stream.finish(prefix=npy_header(value.shape, value.dtype))


def zip_members(members: dict[str, tuple[bytes, int, int]]) -> bytes:
    """A zip file (what np.load reads as an .npz) of already deflated members: name -> (data, crc, size)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, (data, crc, size) in members.items():
        if max(len(data), size, out.tell()) >= 0xFFFFFFFF:
            raise ValueError(f"{name}: over 4 GiB, which needs zip64")
        raw = name.encode()
        offset = out.tell()
        fields = (20, 0, 8, 0, _DOS_DATE, crc, len(data), size, len(raw))
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + raw + data)
        central.write(
            struct.pack("<IH", 0x02014B50, _MADE_BY)
            + struct.pack("<HHHHHIIIHH", *fields, 0)
            + struct.pack("<HHHII", 0, 0, 0, 0o100644 << 16, offset)
            + raw
        )
    cd = central.getvalue()
    start = out.tell()
    n = len(members)
    out.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), start, 0))
    return out.getvalue()


def encode_npz(arrays: dict[str, np.ndarray], level: int = LEVEL) -> bytes:
    """An .npz (what np.load reads), deflated with ISA-L at `level` (0-3)."""
    return zip_members(
        {f"{k}.npy": deflate_array(np.asanyarray(v), level) for k, v in arrays.items()}
    )


def check_episode(arrays: dict[str, np.ndarray], path: Path | str) -> None:
    """Raise a one-line error if the arrays are not one well-formed episode."""
    missing = [k for k in EPISODE_KEYS if k not in arrays]
    if missing:
        raise WorldModelsError(f"{path}: corrupt episode file (missing {', '.join(missing)})")
    obs = arrays["obs"]
    T = len(obs)
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[1:] != (64, 64, 3) or T == 0:
        raise WorldModelsError(f"{path}: corrupt episode file (obs {obs.dtype} {obs.shape})")
    for k in EPISODE_KEYS[1:]:
        if len(arrays[k]) != T:
            raise WorldModelsError(
                f"{path}: corrupt episode file ({k} has {len(arrays[k])} steps, obs {T})"
            )


def load_episode(path: Path, keys: tuple[str, ...] = EPISODE_KEYS) -> dict[str, np.ndarray]:
    """Read an episode (or some of its arrays); a truncated or corrupt file raises a one-line error."""
    return load_npz(path, keys, check=keys == EPISODE_KEYS, what="episode")


def load_npz(path: Path, keys: tuple[str, ...], check: bool = False, what: str = "file") -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise WorldModelsError(
                    f"{path}: corrupt {what} file (missing {', '.join(missing)})"
                )
            arrays = {k: f[k] for k in keys}
    except WorldModelsError:
        raise
    except FileNotFoundError:
        raise WorldModelsError(f"{path}: missing {what} file") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        raise WorldModelsError(
            f"{path}: corrupt {what} file ({type(e).__name__}); delete it and rerun to recreate it"
        ) from None
    if check:
        check_episode(arrays, path)
    return arrays


def episode_length(path: Path) -> int:
    """Number of steps, read from the small reward array (the frames stay compressed)."""
    return len(load_npz(path, ("reward",), what="episode")["reward"])


def verify_episodes(folder: Path) -> list[str]:
    """Fully read every episode; return one line per bad file."""
    bad = []
    for path in list_episodes(folder):
        try:
            load_episode(path)
        except WorldModelsError as e:
            bad.append(str(e))
    return bad
