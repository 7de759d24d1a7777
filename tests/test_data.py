"""Offline datasets and the readers for formats users bring, on tiny files the tests write."""

import gzip

import numpy as np
import pytest

from genzoo import data
from inference.errors import DataError, MissingPackageError, ParseError, UnknownNameError


def test_digits_are_scikit_learns():
    from sklearn.datasets import load_digits

    d = data.digits()
    raw = load_digits()
    assert d["images"].shape == (1797, 8, 8)
    np.testing.assert_array_equal(d["images"] * 16, raw.images)
    np.testing.assert_array_equal(d["labels"], raw.target)
    b = data.digits(binarize=True)
    assert set(np.unique(b["images"])) == {0.0, 1.0}
    np.testing.assert_array_equal(b["images"], (raw.images > 8).astype(float))


def test_bundled_networks_found_without_network():
    names = data.bn_networks()
    assert {"asia", "alarm", "child", "insurance", "hepar2", "win95pts", "andes", "munin"} <= set(names)
    path = data.bn_network_path("asia")
    with gzip.open(path, "rt") as f:
        assert "network" in f.read(200)
    with pytest.raises(UnknownNameError, match="unknown network 'atlantis'"):
        data.bn_network_path("atlantis")


def test_missing_data_package_names_the_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pgmpy" else real(name, *a))
    with pytest.raises(MissingPackageError, match="pip install pgmpy"):
        data.bn_network_path("asia")


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    array = (np.arange(2 * 3 * 4) * 7 % 251).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / "x.idx"
    data.write_idx(path, array)
    if compress:
        gz = tmp_path / "x.idx.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_idx_matches_the_published_layout(tmp_path):
    # MNIST's header: 0x00000803 then N, rows, cols, big-endian (LeCun et al., the MNIST page).
    pixels = np.array([[[0, 255], [128, 1]]], dtype=np.uint8)
    blob = bytes([0, 0, 8, 3]) + (1).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + pixels.tobytes()
    (tmp_path / "img").write_bytes(blob)
    labels = bytes([0, 0, 8, 1]) + (1).to_bytes(4, "big") + bytes([7])
    (tmp_path / "lab").write_bytes(labels)
    d = data.idx_images(tmp_path / "img", tmp_path / "lab")
    np.testing.assert_allclose(d["images"], pixels / 255.0)
    assert d["labels"].tolist() == [7]


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ParseError, match="magic"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ParseError, match="does not match shape"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "kind").write_bytes(bytes([0, 0, 0x42, 1]) + (1).to_bytes(4, "big") + b"a")
    with pytest.raises(ParseError, match="data type"):
        data.read_idx(tmp_path / "kind")


def test_mnist_csv(tmp_path):
    rows = np.zeros((2, 5), dtype=int)
    rows[:, 0] = [3, 9]
    rows[1, 1:] = [255, 0, 51, 102]
    path = tmp_path / "mnist.csv"
    path.write_text("label,p1,p2,p3,p4\n" + "\n".join(",".join(map(str, r)) for r in rows))
    d = data.mnist_csv(path, image_shape=(2, 2))
    assert d["labels"].tolist() == [3, 9]
    np.testing.assert_allclose(d["images"][1], [[1.0, 0.0], [0.2, 0.4]])
    with pytest.raises(DataError, match="columns"):
        data.mnist_csv(path, image_shape=(3, 3))


def test_text_readers(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat\n\n  a dog ran  \n")
    assert data.read_text_corpus(path) == ["the cat sat", "a dog ran"]
    (tmp_path / "bin.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(ParseError, match="utf-8"):
        data.read_text_corpus(tmp_path / "bin.txt")
    lee = data.text_corpus("lee")
    assert len(lee["documents"]) == 300
    with pytest.raises(UnknownNameError, match="unknown text corpus"):
        data.text_corpus("nope")


def test_array_readers(tmp_path):
    a = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(data.read_array(tmp_path / "a.npy"), a)
    (tmp_path / "a.csv").write_text("0,1,2\n3,4,5\n")
    np.testing.assert_array_equal(data.read_array(tmp_path / "a.csv"), a)
    (tmp_path / "b.csv").write_text("0,1,x\n")
    with pytest.raises(ParseError, match="b.csv"):
        data.read_array(tmp_path / "b.csv")
    with pytest.raises(DataError, match="unknown array format"):
        data.read_array(tmp_path / "a.parquet")
