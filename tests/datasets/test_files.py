"""Files and their readers (:mod:`pyro_bfn.datasets.files`): the restricted unpickler, the IDX
reader and the download helpers' errors, on tiny inputs written by the tests."""

import gzip
import pickle
import sys

import numpy as np
import pytest

from pyro_bfn import datasets as data
from pyro_bfn.datasets import files

# ----------------------------------------------------------------------------------------------
# restricted unpickling


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_restricted_unpickle_rejects_os_system(tmp_path, evil):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(evil(f"touch {marker}"), protocol=4)
    with pytest.raises(data.ForbiddenPickleError, match=r"(posix|os)\.system") as info:
        data.restricted_unpickle(payload)
    assert "not allowed" in str(info.value)
    assert not marker.exists()
    assert isinstance(info.value, pickle.UnpicklingError)


def test_restricted_unpickle_rejects_builtins_and_nested_payloads():
    with pytest.raises(data.ForbiddenPickleError, match=r"builtins\.eval"):
        data.restricted_unpickle(pickle.dumps(_EvalEvil(), protocol=4))
    # a forbidden global hidden inside an otherwise valid structure
    nested = pickle.dumps({b"data": np.zeros(3, np.uint8), b"x": [_EvalEvil()]}, protocol=4)
    with pytest.raises(data.ForbiddenPickleError):
        data.restricted_unpickle(nested)


@pytest.mark.parametrize("protocol", [3, 4])
def test_restricted_unpickle_accepts_numpy_arrays(protocol):
    value = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)), [b"k", 3])
    out = data.restricted_unpickle(pickle.dumps(value, protocol=protocol))
    np.testing.assert_array_equal(out[0][0], value[0][0])
    assert out[0][0].dtype == np.float32 and out[0][1].dtype == np.int64
    assert out[1] == [b"k", 3]


def test_restricted_unpickle_accepts_numpy1_module_name():
    """mnist.pkl.gz names numpy.core.multiarray._reconstruct (numpy 1); it maps to numpy._core."""
    # protocol 3 names globals as text lines (GLOBAL opcode) and has no frames to resize
    payload = pickle.dumps(np.arange(4, dtype=np.int64), protocol=3)
    payload = payload.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in payload and b"numpy._core" not in payload
    np.testing.assert_array_equal(data.restricted_unpickle(payload), np.arange(4))


# ----------------------------------------------------------------------------------------------
# IDX files


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_good(tmp_path, compress, idx_bytes):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = data.read_idx(path, ndim=3)
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8 and out.flags.writeable


def test_read_idx_bad_magic(tmp_path, idx_bytes):
    array = np.zeros((2, 2), dtype=np.uint8)
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(array, magic=b"\x01\x00\x08\x02")))
    with pytest.raises(data.DataIntegrityError, match="bad magic number"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(idx_bytes(array, magic=b"\x00\x00\x07\x02")))  # unknown type
    with pytest.raises(data.DataIntegrityError, match="bad magic number"):
        data.read_idx(path)


def test_read_idx_truncated_trailing_and_wrong_dims(tmp_path, idx_bytes):
    array = np.ones((3, 5), dtype=np.uint8)
    raw = idx_bytes(array)
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(data.DataIntegrityError, match="truncated"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(raw + b"\x00"))
    with pytest.raises(data.DataIntegrityError, match="trailing"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(raw[:6]))  # header cut inside the dimensions
    with pytest.raises(data.DataIntegrityError, match="truncated header"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(data.DataIntegrityError, match="2 dimensions, expected 3"):
        data.read_idx(path, ndim=3)
    path.write_bytes(gzip.compress(raw)[:-8])  # gzip stream cut short
    with pytest.raises(data.DataIntegrityError):
        data.read_idx(path)
    with pytest.raises(data.DataNotFoundError):
        data.read_idx(tmp_path / "absent.gz")


# ----------------------------------------------------------------------------------------------
# locations, checksums, tools


def test_data_root_and_split_check(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_BFN_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv("PYRO_BFN_DATA")
    assert str(data.data_root()) == "data"
    assert files.check_split("test", ("train", "test")) == "test"
    with pytest.raises(ValueError, match=r"unknown split 'dev'; expected one of 'train', 'test'"):
        files.check_split("dev", ("train", "test"))


def test_sha256_and_file_key(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert files.sha256_of_file(path, chunk=2) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    key = files.file_key(path)
    path.write_bytes(b"abcd")
    assert files.file_key(path) != key  # a changed file gets a new cache key


def test_run_tool_errors_name_the_step():
    with pytest.raises(RuntimeError, match=r"unpacking x: the program 'no-such-program-pyro-bfn' is not available"):
        files.run_tool(["no-such-program-pyro-bfn"], what="unpacking x")
    with pytest.raises(RuntimeError, match=r"(?s)failing step: .* failed with exit code 3:\nboom"):
        files.run_tool([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"], what="failing step")
    assert files.run_tool([sys.executable, "-c", "print('out')"], what="echo") == "out\n"


def test_pip_download_sdist_reuses_a_present_file(tmp_path):
    (tmp_path / "pkg-1.0.tar.gz").write_bytes(b"")
    assert files.pip_download_sdist("pkg==1.0", "pkg-1.0.tar.gz", tmp_path) == tmp_path / "pkg-1.0.tar.gz"
