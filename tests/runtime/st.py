"""st.py: a small pure-Python reader and writer of safetensors files.

Debian ships no python3-safetensors, so the tests use this instead.  It
needs only struct, json and numpy, and follows the format as the reference
implementation writes it: an 8-byte little-endian header length N, N bytes
of JSON (padded with spaces so the data starts 8-byte aligned), then the
tensors' little-endian bytes, contiguous, in the order of the header.

    import st
    st.save("ckpt.safetensors", {"w": np.zeros((2, 3), np.float32)},
            metadata={"epoch": "3"})
    tensors = st.load("ckpt.safetensors")          # name -> np.ndarray
    tensors, meta = st.load("ckpt.safetensors", with_metadata=True)

Torch tensors may be passed to save (they go through .numpy()).
"""

import json
import struct

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {(v.kind, v.itemsize): k for k, v in _DTYPES.items()}


def _as_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)  # (tobytes() below is always C order)


def save(path, tensors, metadata=None):
    """Write dict name -> array (numpy or torch) to path as safetensors."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, value in tensors.items():
        arr = _as_numpy(value)
        key = (arr.dtype.kind, arr.dtype.itemsize)
        if key not in _NAMES:
            raise ValueError(f"{name}: unsupported dtype {arr.dtype}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _NAMES[key],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def load(path, with_metadata=False):
    """Read path; returns dict name -> np.ndarray (and the metadata dict
    when with_metadata).  Raises ValueError on a malformed file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} exceeds file")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    spans = []
    for name, info in header.items():
        dtype = _DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: {name}: offsets out of range")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != end - begin:
            raise ValueError(f"{path}: {name}: shape does not match length")
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
        spans.append((begin, end))
    at = 0
    for begin, end in sorted(spans):
        if begin != at:
            raise ValueError(f"{path}: tensor data not contiguous")
        at = end
    if at != len(data):
        raise ValueError(f"{path}: data area has unused bytes")
    return (out, meta) if with_metadata else out
