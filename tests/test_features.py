"""Feature cache: round trip, keys, corrupt files, atomic writes, media fingerprints."""
from __future__ import annotations

import os
import time

import pytest
import torch

from nanoemox.data.features import FeatureCache, media_fingerprint


@pytest.fixture
def cache(tmp_path) -> FeatureCache:
    return FeatureCache(tmp_path / "features")


def test_round_trip_and_stats(cache):
    t = {"audio_features": torch.randn(8, 16), "audio_mask": torch.tensor([True] * 3 + [False] * 5)}
    assert cache.get("s1:abc", "whisper:v1") is None
    cache.put("s1:abc", "whisper:v1", t)
    got = cache.get("s1:abc", "whisper:v1")
    assert set(got) == set(t)
    assert torch.equal(got["audio_features"], t["audio_features"]) and got["audio_mask"].dtype == torch.bool
    assert ("s1:abc", "whisper:v1") in cache
    assert ("s1:abc", "whisper:v2") not in cache
    assert cache.get("s1:abc", "whisper:v2") is None  # another encoder never sees it
    assert cache.stats["hits"] == 1 and cache.stats["misses"] == 2 and cache.stats["writes"] == 1


def test_keys_are_hashed_into_safe_file_names(cache):
    weird = "../../etc/passwd:with spaces/and\\slashes\0and nul é"
    cache.put(weird, "enc/../x", {"x": torch.ones(2)})
    path = cache.path_for(weird, "enc/../x")
    assert path.is_file() and cache.root in path.parents
    assert all(c in "0123456789abcdef." for c in path.name.replace("safetensors", ""))
    assert torch.equal(cache.get(weird, "enc/../x")["x"], torch.ones(2))


def test_non_contiguous_views_and_shared_storage_are_saved(cache):
    base = torch.arange(24.0).reshape(4, 6)
    cache.put("k", "e", {"a": base.T, "b": base[1], "c": base[1]})  # a view, and two views of one storage
    got = cache.get("k", "e")
    assert torch.equal(got["a"], base.T) and torch.equal(got["c"], base[1])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_entry_is_a_miss_and_removed(cache, damage):
    cache.put("k", "e", {"x": torch.randn(64, 64)})
    path = cache.path_for("k", "e")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    else:
        path.write_bytes(b"")
    assert cache.get("k", "e") is None
    assert not path.exists()
    assert cache.stats["corrupt"] == 1
    cache.put("k", "e", {"x": torch.zeros(1)})  # and it can be written again
    assert torch.equal(cache.get("k", "e")["x"], torch.zeros(1))


def test_an_entry_for_another_key_is_refused(cache):
    """A file renamed onto another key's path (or a hash collision) is never returned."""
    cache.put("a", "e", {"x": torch.ones(1)})
    os.makedirs(cache.path_for("b", "e").parent, exist_ok=True)
    os.replace(cache.path_for("a", "e"), cache.path_for("b", "e"))
    assert cache.get("b", "e") is None


def test_writes_leave_no_temporary_files(cache):
    for i in range(5):
        cache.put(f"k{i}", "e", {"x": torch.randn(10)})
    leftovers = [p for p in cache.root.rglob("*") if p.is_file() and not p.name.endswith(".safetensors")]
    assert leftovers == []


def test_non_tensor_values_are_rejected(cache):
    with pytest.raises(TypeError):
        cache.put("k", "e", {"x": [1, 2, 3]})


def test_failed_write_is_logged_not_raised(cache, monkeypatch):
    import safetensors.torch

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    cache.put("k", "e", {"x": torch.ones(1)})
    assert cache.stats["write_errors"] == 1 and ("k", "e") not in cache


def test_clear_one_encoder(cache):
    cache.put("k", "e1", {"x": torch.ones(1)})
    cache.put("k", "e2", {"x": torch.ones(1)})
    cache.clear("e1")
    assert ("k", "e1") not in cache and ("k", "e2") in cache
    cache.clear()
    assert ("k", "e2") not in cache


def test_default_root_is_in_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOEMOX_CACHE", str(tmp_path / "c"))
    assert FeatureCache().root == tmp_path / "c" / "features"


def test_media_fingerprint(tmp_path):
    f = tmp_path / "clip.mp4"
    f.write_bytes(os.urandom(200_000))
    fp = media_fingerprint(f)
    assert fp == media_fingerprint(str(f)) and len(fp) == 40
    # a change in the last bytes (same size, same mtime) is seen
    st = f.stat()
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert media_fingerprint(f) != fp
    # touching the file changes it too
    fp2 = media_fingerprint(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert media_fingerprint(f) != fp2
    # a copy elsewhere is a different key (path is part of it)
    g = tmp_path / "copy.mp4"
    g.write_bytes(f.read_bytes())
    assert media_fingerprint(g) != media_fingerprint(f)
    # frame folders
    d = tmp_path / "frames"
    d.mkdir()
    (d / "1.jpg").write_bytes(b"x")
    a = media_fingerprint(d)
    time.sleep(0.01)
    (d / "2.jpg").write_bytes(b"y")
    assert media_fingerprint(d) != a
    with pytest.raises(OSError):
        media_fingerprint(tmp_path / "missing.mp4")
