"""atomic_save: the serialised bytes land whole, and a writer that fails leaves nothing behind."""
import numpy as np
import pytest

from ltkit.io import atomic_save


def test_atomic_save_writes_what_the_writer_wrote(tmp_path):
    path = tmp_path / "sub" / "a.npy"
    atomic_save(path, lambda f: np.save(f, np.arange(5)))
    assert np.array_equal(np.load(path), np.arange(5))


def test_atomic_save_failing_writer_leaves_old_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save(path, broken)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
