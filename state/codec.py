"""Named numeric arrays <-> one binary blob with a versioned header. Never pickle.

Layout (every integer little-endian)::

    offset 0   8 bytes   magic b"LADSDIN\\x00"
    offset 8   uint16    format version (1)
    offset 10  uint32    header length H in bytes
    offset 14  H bytes   UTF-8 JSON header:
                         {"meta": {...},
                          "arrays": [{"name", "dtype", "shape", "offset", "nbytes"}, ...]}
    zero padding to the next multiple of 8: the data section starts there
    data       each array's raw C-order little-endian bytes at ``offset`` (relative to the start
               of the data section, a multiple of 8), zero padding between arrays

``dtype`` is numpy's type string (``'<f4'``, ``'|b1'``, ...); only bool, integer, float and
complex types are allowed, so a blob can never carry code. The blob ends exactly at the end of
the last array. The header is written by Python's ``json`` and may hold NaN/Infinity floats
(Python's JSON extension) in ``meta``.

Decoded arrays are zero-copy, *read-only* views into the blob (``np.frombuffer``): decoding a
128 MB state costs no copy, and they keep the blob alive. Callers copy what they mutate.
"""
from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

MAGIC = b"LADSDIN\x00"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
ALIGN = 8
_PREAMBLE = struct.Struct("<8sHI")  # magic, version, header length
#: numpy dtype kinds a blob may hold: bool, signed/unsigned integer, float, complex.
ALLOWED_KINDS = "biufc"


class StateFormatError(ValueError):
    """A blob is not a valid LADSDIn state/model blob (corrupt, truncated or a newer format)."""


def _pad(n: int) -> int:
    return -n % ALIGN


def _as_little_endian(name: str, a: Any) -> np.ndarray:
    """A C-contiguous little-endian (or byte-order-free) copy/view of ``a``; rejects non-numeric."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"array names must be non-empty strings, got {name!r}")
    arr = np.asarray(a)
    if arr.dtype.kind not in ALLOWED_KINDS or arr.dtype.fields is not None:
        raise TypeError(
            f"array '{name}' has dtype {arr.dtype} (kind '{arr.dtype.kind}'); only bool, integer, float and "
            "complex arrays can be stored: convert it (e.g. dates to int64 days, text into meta)"
        )
    # a no-op view for native little-endian arrays; a byte-swapping copy for big-endian ones
    return np.asarray(arr, dtype=arr.dtype.newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d


def encode_arrays(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> bytes:
    """Pack named arrays and a JSON-serialisable ``meta`` dict into one blob (layout above).

    Big-endian or non-contiguous inputs are converted; each array's bytes are copied exactly
    once, into the returned blob.

    Raises:
        TypeError: an array is not bool/integer/float/complex (object, string, datetime, struct).
        ValueError: a name is not a non-empty string, or ``meta`` is not JSON-serialisable.
    """
    return b"".join(_parts(arrays, meta))


def write_arrays(f: BinaryIO, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> int:
    """Write the :func:`encode_arrays` blob to the binary file ``f`` without building it in memory
    (a GB-sized checkpoint is streamed, not copied). Returns the bytes written."""
    n = 0
    for part in _parts(arrays, meta):
        f.write(part)
        n += len(part) if isinstance(part, bytes) else part.nbytes
    return n


def _parts(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None) -> list[Any]:
    packed = [(name, _as_little_endian(name, a)) for name, a in arrays.items()]
    entries = []
    offset = 0
    for name, arr in packed:
        entries.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset, "nbytes": int(arr.nbytes)})
        offset += arr.nbytes + _pad(arr.nbytes)
    try:
        header = json.dumps({"meta": dict(meta or {}), "arrays": entries}, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta is not JSON-serialisable ({e}); use str/int/float/bool/None values, lists and str-keyed dicts") from e
    parts: list[Any] = [_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header)), header, b"\x00" * _pad(_PREAMBLE.size + len(header))]
    for i, (_, arr) in enumerate(packed):
        if arr.nbytes:
            # a flat uint8 view: bytes.join reads the buffer directly (the only copy)
            parts.append(arr.reshape(-1).view(np.uint8))
        if i < len(packed) - 1:
            parts.append(b"\x00" * _pad(arr.nbytes))
    return parts


def _entry(raw: Any, data_len: int) -> tuple[str, np.dtype, tuple[int, ...], int, int]:
    """Validate one header array entry -> (name, dtype, shape, offset, nbytes)."""
    try:
        name, dtype_s, shape_l, offset, nbytes = raw["name"], raw["dtype"], raw["shape"], raw["offset"], raw["nbytes"]
        dtype = np.dtype(dtype_s)
        shape = tuple(shape_l)
    except (KeyError, TypeError, ValueError) as e:
        raise StateFormatError(f"corrupt array entry {raw!r} in the blob header ({e})") from e
    if not isinstance(name, str) or dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.byteorder == ">":
        raise StateFormatError(f"array entry {raw!r} is not a little-endian bool/integer/float/complex array")
    if not all(isinstance(v, int) and v >= 0 for v in (*shape, offset, nbytes)):
        raise StateFormatError(f"array entry {raw!r} has a negative shape, offset or size")
    if nbytes != math.prod(shape) * dtype.itemsize:
        raise StateFormatError(
            f"array '{name}' declares {nbytes} bytes but shape {shape} of {dtype.str} needs {math.prod(shape) * dtype.itemsize}: the blob is corrupt"
        )
    if offset + nbytes > data_len:
        raise StateFormatError(f"blob truncated: array '{name}' ends at data byte {offset + nbytes} but the data section has {data_len}")
    return name, dtype, shape, offset, nbytes


def read_header(blob: bytes | bytearray | memoryview) -> tuple[dict[str, Any], list[Any], int]:
    """Parse and check the preamble and header -> (meta, raw array entries, data-section start).

    Cheap (no array bytes are touched): use it to read a blob's meta alone.

    Raises:
        StateFormatError: bad magic, unsupported version, truncated or corrupt header.
    """
    view = memoryview(blob).cast("B")
    if len(view) < len(MAGIC):
        if MAGIC.startswith(bytes(view)):
            raise StateFormatError(f"blob truncated: {len(view)} bytes, shorter than the {_PREAMBLE.size}-byte preamble")
        raise StateFormatError("not a LADSDIn blob (bad magic); it was not written by ladsdin.state.codec")
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise StateFormatError(f"not a LADSDIn blob (bad magic {bytes(view[:len(MAGIC)])!r}); it was not written by ladsdin.state.codec")
    if len(view) < _PREAMBLE.size:
        raise StateFormatError(f"blob truncated: {len(view)} bytes, shorter than the {_PREAMBLE.size}-byte preamble")
    _, version, hlen = _PREAMBLE.unpack_from(view)
    if version not in SUPPORTED_VERSIONS:
        raise StateFormatError(
            f"blob format version {version} is not supported (this ladsdin reads versions {list(SUPPORTED_VERSIONS)}); "
            "upgrade ladsdin, or re-bootstrap the frame to rewrite its state and model"
        )
    start = _PREAMBLE.size + hlen
    if len(view) < start:
        raise StateFormatError(f"blob truncated: the header needs {start} bytes but the blob has {len(view)}")
    try:
        header = json.loads(bytes(view[_PREAMBLE.size : start]).decode("utf-8"))
        meta, entries = header["meta"], header["arrays"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise StateFormatError(f"corrupt blob header ({e})") from e
    if not isinstance(meta, dict) or not isinstance(entries, list):
        raise StateFormatError("corrupt blob header: 'meta' must be an object and 'arrays' a list")
    return meta, entries, start + _pad(start)


def decode_arrays(blob: bytes | bytearray | memoryview) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Unpack a blob from :func:`encode_arrays` -> (arrays, meta).

    The arrays are zero-copy read-only views into ``blob`` (copy what you mutate).

    Raises:
        StateFormatError: bad magic, unsupported version, truncated blob, or a header that does not
            match the array bytes.
    """
    meta, raw_entries, data_start = read_header(blob)
    view = memoryview(blob).cast("B")
    data_len = len(view) - data_start
    arrays: dict[str, np.ndarray] = {}
    end = 0
    for raw in raw_entries:
        name, dtype, shape, offset, nbytes = _entry(raw, max(data_len, 0))
        if name in arrays:
            raise StateFormatError(f"corrupt blob header: array '{name}' appears twice")
        if nbytes:
            a = np.frombuffer(view, dtype=dtype, count=nbytes // dtype.itemsize, offset=data_start + offset).reshape(shape)
        else:
            a = np.empty(shape, dtype=dtype)
        a.flags.writeable = False  # a bytearray blob would otherwise give writable views
        arrays[name] = a
        end = max(end, offset + nbytes)
    expected = data_start + end
    if len(view) < expected:
        raise StateFormatError(f"blob truncated: {len(view)} bytes, the header describes {expected}")
    if len(view) > expected:
        raise StateFormatError(f"blob has {len(view) - expected} bytes after its last array: the header does not match the data")
    return arrays, meta
