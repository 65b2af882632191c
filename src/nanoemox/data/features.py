"""Feature cache for frozen encoders: each sample's encoder outputs are computed once and reused.

Layout: `<root>/<h(encoder_fingerprint)[:16]>/<h(key)[:2]>/<h(key)>.safetensors` where h is SHA-1,
so any key is a safe file name and one encoder's entries can be dropped together. Each file
records its sample key and encoder fingerprint in the safetensors metadata and is checked on read.
Writes go to a temporary file in the same folder and are renamed into place (atomic: a reader sees
the old entry or the complete new one). A file that cannot be read (truncated, garbage, wrong
key) counts as a miss and is deleted; a write that fails (disk full, read-only) is logged and
skipped: the cache never stops training.

The sample key should change whenever the media or their decoding change; `media_fingerprint`
gives a cheap content fingerprint of a media file for that purpose.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)

__all__ = ["media_fingerprint", "FeatureCache"]

_EDGE = 64 * 1024


def media_fingerprint(path: str | os.PathLike) -> str:
    """SHA-1 (hex) of the resolved path, size, mtime_ns and the first and last 64 KiB of a file
    (a folder of frames: of its entries' names, sizes and mtimes). Raises OSError when missing."""
    p = Path(path).resolve()
    st = p.stat()
    h = hashlib.sha1()
    h.update(str(p).encode("utf-8", "surrogateescape"))
    h.update(f"\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    if p.is_dir():
        for entry in sorted(os.scandir(p), key=lambda e: e.name):
            try:
                est = entry.stat()
            except OSError:
                continue
            h.update(f"{entry.name}\0{est.st_size}\0{est.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()
    with open(p, "rb") as f:
        h.update(f.read(_EDGE))
        if st.st_size > _EDGE:
            f.seek(max(_EDGE, st.st_size - _EDGE))
            h.update(f.read(_EDGE))
    return h.hexdigest()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()


class FeatureCache:
    def __init__(self, root: str | os.PathLike | None = None):
        if root is None:
            from ..storage import cache_dir

            root = cache_dir() / "features"
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self.writes = 0
        self.write_errors = 0
        self._lock = threading.Lock()

    def path_for(self, sample_key: str, encoder_fingerprint: str) -> Path:
        k = _sha1(f"{encoder_fingerprint}\0{sample_key}")
        return self.root / _sha1(encoder_fingerprint)[:16] / k[:2] / f"{k}.safetensors"

    def get(self, sample_key: str, encoder_fingerprint: str):
        """The cached tensors (dict name -> CPU tensor) or None."""
        from safetensors import safe_open

        path = self.path_for(sample_key, encoder_fingerprint)
        if not path.is_file():
            self._count("misses")
            return None
        try:
            out = {}
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("sample_key") != sample_key or meta.get("encoder") != encoder_fingerprint:
                    raise ValueError("key mismatch")
                for name in f.keys():
                    out[name] = f.get_tensor(name)
        except Exception as e:  # truncated, garbage, foreign file: a miss, and the file goes
            log.warning("feature cache: dropping unreadable entry %s (%s)", path, e)
            self._count("corrupt")
            self._count("misses")
            try:
                path.unlink()
            except OSError:
                pass
            return None
        self._count("hits")
        return out

    def put(self, sample_key: str, encoder_fingerprint: str, tensors: Mapping[str, "object"]) -> None:
        import torch
        from safetensors.torch import save_file

        clean = {}
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"feature cache: {name!r} is a {type(t).__name__}, not a tensor")
            clean[str(name)] = t.detach().to("cpu").contiguous().clone()
        path = self.path_for(sample_key, encoder_fingerprint)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            save_file(clean, tmp, metadata={"sample_key": sample_key, "encoder": encoder_fingerprint})
            os.replace(tmp, path)
            tmp = None
            self._count("writes")
        except OSError as e:
            log.warning("feature cache: could not write %s (%s)", path, e)
            self._count("write_errors")
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def __contains__(self, key) -> bool:
        """`(sample_key, encoder_fingerprint) in cache` (does not count as a hit or miss)."""
        sample_key, encoder_fingerprint = key
        return self.path_for(sample_key, encoder_fingerprint).is_file()

    def discard(self, sample_key: str, encoder_fingerprint: str) -> None:
        try:
            self.path_for(sample_key, encoder_fingerprint).unlink()
        except FileNotFoundError:
            pass

    def clear(self, encoder_fingerprint: str | None = None) -> None:
        """Remove every entry (or only one encoder's)."""
        import shutil

        target = self.root / _sha1(encoder_fingerprint)[:16] if encoder_fingerprint is not None else self.root
        if target == self.root:
            for child in self.root.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        else:
            shutil.rmtree(target, ignore_errors=True)

    @property
    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt, "writes": self.writes, "write_errors": self.write_errors}

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r}, hits={self.hits}, misses={self.misses})"

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
