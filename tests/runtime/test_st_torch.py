"""test_st_torch.py: safetensors interchange between PyTorch/numpy and the
lamina runtime.

Writes files with st.py from torch tensors, has the C tool st_roundtrip
(tests/runtime/st_roundtrip.c, built by run.sh) read them with lm_st_load
and write them back with lm_st_save, and checks that numpy reads back the
same bits and metadata.  Also checks the C side's error messages for files
PyTorch users could hand it.

Run with Debian's interpreter (it has torch):
    LM_ST_ROUNDTRIP=build/test-runtime/portable/st_roundtrip \\
        /usr/bin/python3 tests/runtime/test_st_torch.py
Prints "N passed, N failed" and exits non-zero on failure.
"""

import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

try:
    import torch
except ImportError:  # the tests below fall back to numpy
    torch = None

TOOL = os.environ.get("LM_ST_ROUNDTRIP", "build/test-runtime/portable/st_roundtrip")


def _tensor(arr):
    """A torch tensor when torch is there, else the numpy array."""
    return torch.from_numpy(arr) if torch is not None else arr


def _spec(name, shape):
    return f"{name}=" + ",".join(str(d) for d in shape)


def _run(args):
    return subprocess.run([TOOL] + args, capture_output=True, text=True)


def _bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def test_torch_to_c_and_back(tmp):
    gen = np.random.default_rng(0)
    special = np.array(
        [np.inf, -np.inf, np.nan, -0.0, 1e-45, 3.4e38, -1.5, 0.1], dtype=np.float32
    )
    tensors = {
        "c1.weight": _tensor(gen.standard_normal((6, 1, 5, 5)).astype(np.float32)),
        "c1.bias": _tensor(gen.standard_normal(6).astype(np.float32)),
        "f5.weight": _tensor(gen.standard_normal((120, 400)).astype(np.float32)),
        "step": _tensor(np.array(3.5, dtype=np.float32)),
        "special": _tensor(special),
    }
    if torch is not None:  # one tensor straight from torch's generator
        tensors["c1.weight"] = torch.randn(6, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    src = os.path.join(tmp, "torch.safetensors")
    out = os.path.join(tmp, "c.safetensors")
    st.save(src, tensors, metadata={"epoch": "3", "lr": "0.01"})
    specs = [_spec(k, tuple(v.shape)) for k, v in tensors.items()]
    r = _run([src, out, "-m", "epoch", "-m", "lr", "-m", "absent"] + specs)
    assert r.returncode == 0, r.stderr
    back, meta = st.load(out, with_metadata=True)
    assert meta == {"epoch": "3", "lr": "0.01"}, meta
    assert set(back) == set(tensors)
    for name, value in tensors.items():
        want = value.numpy() if hasattr(value, "numpy") else value
        got = back[name]
        assert got.dtype == np.float32 and got.shape == tuple(want.shape), name
        assert np.array_equal(_bits(got), _bits(want)), name


def test_c_output_layout(tmp):
    src = os.path.join(tmp, "a.safetensors")
    out = os.path.join(tmp, "b.safetensors")
    st.save(src, {"w": np.arange(12, dtype=np.float32).reshape(3, 4)})
    r = _run([src, out, "w=3,4"])
    assert r.returncode == 0, r.stderr
    raw = open(out, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0, "data not 8-byte aligned"
    import json

    header = json.loads(raw[8 : 8 + n])
    assert header == {
        "w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}
    }, header
    assert len(raw) == 8 + n + 48


def test_c_rejects_wrong_shape(tmp):
    src = os.path.join(tmp, "shape.safetensors")
    st.save(src, {"c1.weight": np.zeros((6, 1, 5, 5), np.float32)})
    r = _run([src, os.path.join(tmp, "x.safetensors"), "c1.weight=6,1,3,3"])
    assert r.returncode == 1
    want = f"{src}: tensor 'c1.weight' has shape [6,1,5,5], model expects [6,1,3,3]"
    assert r.stderr.strip() == want, r.stderr
    assert not os.path.exists(os.path.join(tmp, "x.safetensors"))


def test_c_rejects_half_precision(tmp):
    src = os.path.join(tmp, "half.safetensors")
    st.save(src, {"w": np.zeros(4, np.float16)})
    r = _run([src, os.path.join(tmp, "x.safetensors"), "w=4"])
    assert r.returncode == 1
    assert "tensor 'w' has dtype F16; lamina reads only F32" in r.stderr, r.stderr


def test_c_rejects_extra_and_missing(tmp):
    src = os.path.join(tmp, "extra.safetensors")
    st.save(src, {"a": np.zeros(2, np.float32), "b": np.ones(3, np.float32)})
    r = _run([src, os.path.join(tmp, "x.safetensors"), "a=2"])
    assert r.returncode == 1 and "tensor 'b' in the file is not part of the model" in r.stderr, r.stderr
    r = _run([src, os.path.join(tmp, "x.safetensors"), "a=2", "b=3", "c=1"])
    assert r.returncode == 1 and "tensor 'c' is missing" in r.stderr, r.stderr


def test_unicode_names_and_metadata(tmp):
    src = os.path.join(tmp, "u.safetensors")
    out = os.path.join(tmp, "u2.safetensors")
    meta = {"note": 'quote " backslash \\ newline \n é ✓ 𝄞'}
    st.save(src, {"layer.é": np.array([1.0, 2.0], np.float32)}, metadata=meta)
    r = _run([src, out, "-m", "note", "layer.é=2"])
    assert r.returncode == 0, r.stderr
    back, meta2 = st.load(out, with_metadata=True)
    assert meta2 == meta, meta2
    assert np.array_equal(back["layer.é"], np.array([1.0, 2.0], np.float32))


def main():
    tests = [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_")]
    passed = failed = 0
    if torch is None:
        print("note: torch not importable; using numpy arrays only")
    if not os.access(TOOL, os.X_OK):
        print(f"FAIL: {TOOL} not built (set LM_ST_ROUNDTRIP)")
        print(f"0 passed, {len(tests)} failed")
        return 1
    for name, fn in tests:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                fn(tmp)
                passed += 1
            except Exception:  # report and go on
                failed += 1
                print(f"FAIL {name}")
                traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
