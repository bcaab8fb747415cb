"""The array codec: exact round trips (property-tested), the documented layout, and clear errors."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ladsdin.state.codec import FORMAT_VERSION, MAGIC, StateFormatError, decode_arrays, encode_arrays, read_header

DTYPES = ["?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def arrays_strategy(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.itemsize > 1 and draw(st.booleans()):
        dtype = dtype.newbyteorder(">")
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    a = draw(hnp.arrays(dtype, shape))
    if a.ndim >= 2 and draw(st.booleans()):
        a = a.T  # non-contiguous input
    return a


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical contents and shape (NaN payloads included)."""
    return a.shape == b.shape and a.dtype.newbyteorder("<") == b.dtype and np.ascontiguousarray(a, b.dtype).tobytes() == b.tobytes()


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), arrays_strategy(), max_size=5), st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_round_trip_is_exact_for_any_dtype_shape_and_meta(arrays, meta):
    blob = encode_arrays(arrays, meta)
    out, meta2 = decode_arrays(blob)
    assert meta2 == meta
    assert list(out) == list(arrays)
    for name, a in arrays.items():
        b = out[name]
        assert _same(a, b), name
        assert not b.flags.writeable
        assert b.dtype.str == a.dtype.newbyteorder("<").str  # stored little-endian whatever came in


def test_layout_matches_the_documented_format():
    a = np.arange(3, dtype=np.int16)
    b = np.array([[1.5, -2.0]], dtype=">f8")
    blob = encode_arrays({"a": a, "b": b}, {"frame": "128A_05172_131313"})
    assert blob[:8] == MAGIC == b"LADSDIN\x00"
    version, hlen = struct.unpack_from("<HI", blob, 8)
    assert version == FORMAT_VERSION == 1
    header = json.loads(blob[14 : 14 + hlen].decode("utf-8"))
    assert header["meta"] == {"frame": "128A_05172_131313"}
    ea, eb = header["arrays"]
    assert ea == {"name": "a", "dtype": "<i2", "shape": [3], "offset": 0, "nbytes": 6}
    assert eb == {"name": "b", "dtype": "<f8", "shape": [1, 2], "offset": 8, "nbytes": 16}
    data = 14 + hlen + (-(14 + hlen) % 8)
    assert data % 8 == 0
    assert blob[data : data + 6] == a.astype("<i2").tobytes()
    assert blob[data + 8 : data + 24] == b.astype("<f8").tobytes()
    assert len(blob) == data + 24
    assert read_header(blob)[0] == {"frame": "128A_05172_131313"}


def test_decoded_arrays_are_aligned_zero_copy_views():
    blob = encode_arrays({"x": np.arange(10, dtype=np.float64), "y": np.ones(3, np.float32), "z": np.zeros(2, np.complex128)})
    out, _ = decode_arrays(blob)
    for a in out.values():
        assert a.ctypes.data % 8 == 0 and not a.flags.owndata
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0
    out2, _ = decode_arrays(bytearray(blob))  # even a mutable buffer gives read-only views
    assert not out2["x"].flags.writeable


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([object()]), np.array(["2020-01-01"], dtype="datetime64[D]"), np.zeros(2, dtype=[("a", "f4")])])
def test_non_numeric_arrays_are_rejected(bad):
    with pytest.raises(TypeError, match="only bool, integer, float and complex"):
        encode_arrays({"x": bad})


def test_bad_names_and_meta_are_rejected():
    with pytest.raises(ValueError, match="non-empty strings"):
        encode_arrays({"": np.zeros(1)})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        encode_arrays({}, {"when": object()})


def test_bad_magic_and_unknown_version():
    blob = encode_arrays({"x": np.arange(4)})
    with pytest.raises(StateFormatError, match="bad magic"):
        decode_arrays(b"PICKLE\x80\x04" + blob[8:])
    with pytest.raises(StateFormatError, match="bad magic"):
        decode_arrays(b"\x80\x04")
    newer = blob[:8] + struct.pack("<H", 7) + blob[10:]
    with pytest.raises(StateFormatError, match=r"version 7 is not supported.*\[1\].*upgrade.*re-bootstrap"):
        decode_arrays(newer)


def test_every_truncation_is_detected():
    blob = encode_arrays({"x": np.arange(5, dtype=np.int32), "y": np.ones((2, 2))}, {"k": 1})
    for n in range(len(blob)):
        with pytest.raises(StateFormatError):
            decode_arrays(blob[:n])
    with pytest.raises(StateFormatError, match="after its last array"):
        decode_arrays(blob + b"\x00")


def _with_header(blob: bytes, edit) -> bytes:
    """Rewrite a blob's header through ``edit`` keeping the data section aligned."""
    meta, entries, data_start = read_header(blob)
    header = {"meta": meta, "arrays": entries}
    edit(header)
    h = json.dumps(header).encode()
    pre = struct.pack("<8sHI", MAGIC, 1, len(h)) + h
    return pre + b"\x00" * (-len(pre) % 8) + blob[data_start:]


def test_header_that_does_not_match_the_data_is_rejected():
    blob = encode_arrays({"x": np.arange(4, dtype=np.int64)})
    assert decode_arrays(_with_header(blob, lambda h: None))[0]["x"].tolist() == [0, 1, 2, 3]

    def wrong_nbytes(h):
        h["arrays"][0]["nbytes"] = 16

    def too_long(h):
        h["arrays"][0]["shape"], h["arrays"][0]["nbytes"] = [8], 64

    def object_dtype(h):
        h["arrays"][0]["dtype"] = "|O"

    def not_json_list(h):
        h["arrays"] = {"x": 1}

    with pytest.raises(StateFormatError, match="declares 16 bytes"):
        decode_arrays(_with_header(blob, wrong_nbytes))
    with pytest.raises(StateFormatError, match="truncated"):
        decode_arrays(_with_header(blob, too_long))
    with pytest.raises(StateFormatError, match="not a little-endian"):
        decode_arrays(_with_header(blob, object_dtype))
    with pytest.raises(StateFormatError, match="'arrays' a list"):
        decode_arrays(_with_header(blob, not_json_list))
    corrupt = blob[:14] + b"\xff" + blob[15:]
    with pytest.raises(StateFormatError, match="corrupt blob header"):
        decode_arrays(corrupt)


def test_empty_and_scalar_arrays():
    out, meta = decode_arrays(encode_arrays({"e": np.zeros((0, 3), np.float32), "s": np.float64(2.5), "b": np.bool_(True)}))
    assert out["e"].shape == (0, 3) and out["e"].dtype == np.float32
    assert out["s"].shape == () and out["s"] == 2.5
    assert out["b"].shape == () and bool(out["b"]) is True
    assert decode_arrays(encode_arrays({})) == ({}, {})
