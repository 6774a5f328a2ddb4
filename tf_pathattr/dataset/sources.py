"""Sources: everything :func:`~tf_pathattr.dataset.explain_dataset` reads, as one stream of records.

Each source knows its length (when it can), yields :class:`~tf_pathattr.files.Record` in a fixed
order, and describes the data for ``run.json`` (:attr:`Source.fingerprint`): the hash of an array,
the files with their sizes and modification times, or, for a stream, the hash of its first
records. Two runs resume each other only when these fingerprints agree.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import Record, decode_file, first_line, list_files

__all__ = ["Source", "ArraySource", "StreamSource", "FileSource", "make_source", "fingerprint_array", "STREAM_PROBE"]

#: Records of a stream hashed into ``run.json`` (an unseeded shuffle changes them between runs).
STREAM_PROBE = 16


def fingerprint_array(a) -> str:
    """sha1 of an array's bytes (C order)."""
    a = np.ascontiguousarray(a)
    return hashlib.sha1(a.view(np.uint8).reshape(-1) if a.size else b"").hexdigest()


def record_digest(h, rid, x, target) -> None:
    """Feed one record (id, target, input bytes) into the hash ``h``."""
    h.update(str(rid).encode("utf-8", "replace") + b"\0" + str(target).encode() + b"\0")
    if x is not None:
        a = np.ascontiguousarray(np.asarray(x.numpy() if hasattr(x, "numpy") else x))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.view(np.uint8).reshape(-1) if a.size else b"")


def _is_files(data) -> bool:
    if isinstance(data, (str, Path)):
        return True
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(isinstance(d, (str, Path)) for d in data)


def first_duplicate(ids) -> tuple | None:
    """``(id, first position, second position)`` of the first repeated id, or ``None``."""
    seen: dict[str, int] = {}
    for i, rid in enumerate(ids):
        rid = str(rid)
        if rid in seen:
            return rid, seen[rid], i
        seen[rid] = i
    return None


class Source:
    """A stream of :class:`Record` with an optional length and a fingerprint for ``run.json``.

    ``replayable``: reading it again gives the same records (arrays, files); a stream may not.
    """

    n: int | None = None
    fingerprint: dict[str, Any] = {}
    replayable = True

    def records(self, skip: Sequence[bool] = (), shard_size: int = 1) -> Iterator[Record | None]:
        """Yield records in order; ``None`` for a record of a shard listed as done in ``skip``
        (read past, not decoded where the source allows it)."""
        raise NotImplementedError


class ArraySource(Source):
    def __init__(self, x, labels=None, ids=None):
        self.x, self.labels = x, labels
        self.ids = None if ids is None else [str(i) for i in np.asarray(ids).reshape(-1).tolist()]
        self.n = len(x)
        if self.ids is not None:
            if len(self.ids) != self.n:
                raise ValueError(f"data: {len(self.ids)} ids for {self.n} examples")
            dup = first_duplicate(self.ids)
            if dup is not None:
                raise ValueError(
                    f"data: duplicate id {dup[0]!r} (records {dup[1]} and {dup[2]}); every record needs its own id"
                )
        self.fingerprint = {
            "kind": "array",
            "shape": list(x.shape),
            "dtype": str(x.dtype),
            "sha1": fingerprint_array(x),
            "labels_sha1": None if labels is None else fingerprint_array(labels),
            "ids_sha1": None if self.ids is None else hashlib.sha1("\n".join(self.ids).encode()).hexdigest(),
        }

    def records(self, skip=(), shard_size=1):
        for i in range(self.n):
            k = i // shard_size
            if k < len(skip) and skip[k]:
                yield None
                continue
            rid = self.ids[i] if self.ids is not None else str(i)
            target = None if self.labels is None else int(self.labels[i])
            yield Record(rid, self.x[i], target)


def _to_py_id(rid):
    if rid is None:
        return None
    rid = rid.numpy() if hasattr(rid, "numpy") else rid
    if isinstance(rid, np.ndarray) and rid.ndim == 0:
        rid = rid.item()
    return rid.decode("utf-8", "replace") if isinstance(rid, (bytes, np.bytes_)) else str(rid)


class StreamSource(Source):
    """``tf.data.Dataset`` or any iterable of examples, ``(x, label)`` pairs or ``{"x", "id", "target"}`` dicts.

    The fingerprint holds the element spec and the sha1 of the first :data:`STREAM_PROBE` records
    (ids, targets, input bytes), read once at construction and replayed: a stream whose order or
    content changes between runs (a ``shuffle`` without a seed) gives another fingerprint.
    """

    replayable = False

    def __init__(self, data, batched: bool | None):
        self.data, self.batched = data, batched
        self.n = None
        spec = getattr(data, "element_spec", None)
        self._iter = self._numbered()
        self._head = list(itertools.islice(self._iter, STREAM_PROBE))
        h = hashlib.sha1()
        for rec in self._head:
            record_digest(h, rec.id, rec.x, rec.target)
        self.fingerprint = {
            "kind": type(data).__name__,
            "element_spec": repr(spec) if spec is not None else None,
            "first_records": len(self._head),
            "first_records_sha1": h.hexdigest(),
        }
        self._used = False

    def _elements(self):
        for el in self.data:
            if isinstance(el, dict):
                x = el.get("x")
                if x is None:
                    raise ValueError("data: dict elements need an 'x' entry (and optionally 'id', 'target')")
                rid, target = el.get("id"), el.get("target", el.get("label"))
            elif isinstance(el, (tuple, list)) and len(el) == 2:
                (x, target), rid = el, None
            elif isinstance(el, (tuple, list)) and len(el) == 1:
                (x,), rid, target = el, None, None
            else:
                x, rid, target = el, None, None
            if self.batched:
                x = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
                t = None if target is None else np.asarray(target.numpy() if hasattr(target, "numpy") else target)
                r = None if rid is None else np.asarray(rid.numpy() if hasattr(rid, "numpy") else rid)
                for j in range(x.shape[0]):
                    yield x[j], None if t is None else t[j], None if r is None else r[j]
            else:
                yield x, target, rid

    def _numbered(self):
        for i, (x, target, rid) in enumerate(self._elements()):
            rid = str(i) if rid is None else _to_py_id(rid)
            if target is not None:
                target = int(np.asarray(target.numpy() if hasattr(target, "numpy") else target))
            x = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
            yield Record(rid, x, target)

    def records(self, skip=(), shard_size=1):
        if self._used:
            raise RuntimeError("internal error: a stream source is read once")
        self._used = True
        for _i, rec in enumerate(itertools.chain(self._head, self._iter)):
            yield rec  # streams are always read in full: skipped shards are checked against their digest


class FileSource(Source):
    def __init__(self, files: list[str], shape, transform="0,1"):
        self.files, self.shape, self.transform = files, shape, transform
        self.n = None
        listing = []
        for f in files:
            try:
                st = os.stat(f)
                listing.append([f, st.st_size, st.st_mtime_ns])
            except OSError:
                listing.append([f, None, None])
        self.fingerprint = {
            "kind": "files",
            "n_files": len(files),
            "files_sha1": hashlib.sha1(repr(listing).encode()).hexdigest(),
            "files": listing if len(listing) <= 1000 else None,
        }

    def count(self) -> int | None:
        """The number of records, read from the files' headers (``None`` when a file cannot tell)."""
        from ..files import IMAGE_SUFFIXES, TFRECORD_SUFFIXES, tfrecord_payloads

        total = 0
        for f in self.files:
            suffix = os.path.splitext(f)[1].lower()
            try:
                if suffix in IMAGE_SUFFIXES:
                    total += 1
                elif suffix == ".npy":
                    arr = np.load(f, mmap_mode="r", allow_pickle=False)
                    batch = self.shape is not None and arr.ndim == len(self.shape) + 1
                    total += int(arr.shape[0]) if batch and tuple(arr.shape[1:]) == tuple(self.shape) else 1
                elif suffix in TFRECORD_SUFFIXES:
                    with open(f, "rb") as fh:
                        total += sum(1 for _ in tfrecord_payloads(fh.read()))
                else:
                    total += 1
            except Exception:
                total += 1  # an unreadable file is one dead letter
        return total

    def records(self, skip=(), shard_size=1):
        i = 0
        for f in self.files:
            try:
                with open(f, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                recs = [Record(f, error=f"cannot read the file: {first_line(exc)}")]
            else:
                recs = decode_file(f, data, self.shape, self.transform)
            for r in recs:
                k = i // shard_size
                yield None if (k < len(skip) and skip[k]) else r
                i += 1


def make_source(data, shape, batched, transform="0,1") -> Source:
    """The :class:`Source` for anything ``explain_dataset`` accepts."""
    if _is_files(data):
        return FileSource(list_files(data), shape, transform)
    try:
        import tensorflow as tf

        is_ds = isinstance(data, tf.data.Dataset)
    except ImportError:  # pragma: no cover
        is_ds = False
    if is_ds:
        if batched is None:
            batched = _dataset_is_batched(data, shape)
        return StreamSource(data, batched)
    if isinstance(data, np.ndarray) or hasattr(data, "__array__") and not isinstance(data, (list, tuple, dict)):
        return ArraySource(np.asarray(data))
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(d, "shape") for d in data):
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise ValueError(f"data: (x, labels) have {len(x)} and {len(y)} rows")
        return ArraySource(x, labels=y)
    if isinstance(data, dict) and "x" in data:
        x = np.asarray(data["x"])
        labels = data.get("target", data.get("label"))
        return ArraySource(x, labels=None if labels is None else np.asarray(labels), ids=data.get("id"))
    if isinstance(data, (dict, str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "data: expected a tf.data.Dataset, a numpy array, (x, labels) arrays, an iterable of "
            f"examples, or file paths / a glob pattern; got {type(data).__name__}"
        )
    return StreamSource(data, bool(batched))


def _dataset_is_batched(ds, shape) -> bool:
    import tensorflow as tf

    spec = ds.element_spec
    if isinstance(spec, dict):
        spec = spec.get("x")
    elif isinstance(spec, tuple):
        spec = spec[0]
    if not isinstance(spec, tf.TensorSpec):
        raise TypeError(f"data: dataset elements must be x, (x, label) or {{'x': ...}} tensors, got {ds.element_spec}")
    rank = spec.shape.rank
    if shape is not None and rank is not None:
        if rank == len(shape):
            return False
        if rank == len(shape) + 1:
            return True
        raise ValueError(
            f"data: dataset elements have shape {spec.shape}; the model expects examples of shape "
            f"{tuple(shape)} (or batches of them)"
        )
    if rank is not None and rank > 0 and spec.shape[0] is None:
        return True
    raise ValueError(
        "data: cannot tell whether the dataset yields examples or batches (the model's input shape "
        "is unknown); pass batched=True or batched=False"
    )
