"""The output folder of a dataset run: shards of attributions, the table, dead letters, ``run.json``.

A folder holds one run. Shard ``k`` is three files written to temporary names and renamed, the
table last: ``attributions-SSSSS.npz`` (or ``.tfrecord``), ``dead_letters-SSSSS.jsonl`` (when the
shard has any) and ``examples-SSSSS.parquet`` (or ``.csv``); a shard whose table exists is
complete. Beam names its shards ``SSSSS-of-NNNNN``. :func:`read_results` reads any such folder back,
shard by shard (the table of a shard lists its ids in the order of its attribution file).
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..files import masked_crc32c
from .explainer import METRICS

__all__ = [
    "RunFolder",
    "read_results",
    "arrays_bytes",
    "table_bytes",
    "table_columns",
    "dead_letters_bytes",
    "atomic_write",
    "have_pyarrow",
    "RESULT_GLOBS",
]

#: Every file a run writes into its folder.
RESULT_GLOBS = ("attributions-*", "examples-*", "dead_letters-*", "inputs-*", "run.json", "summary.json")


def atomic_write(path: Path, data: bytes):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _tfrecord_bytes(payloads: list[bytes]) -> bytes:
    """TFRecord framing of ``payloads`` (google-crc32c when installed, else TensorFlow's writer)."""
    try:
        import google_crc32c  # noqa: F401
    except ImportError:
        import tempfile

        import tensorflow as tf

        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "shard.tfrecord")
            with tf.io.TFRecordWriter(f) as writer:
                for pl in payloads:
                    writer.write(pl)
            return Path(f).read_bytes()
    parts = []
    for pl in payloads:
        head = struct.pack("<Q", len(pl))
        parts += [head, struct.pack("<I", masked_crc32c(head)), pl, struct.pack("<I", masked_crc32c(pl))]
    return b"".join(parts)


def arrays_bytes(ids: list[str], arrays: dict[str, np.ndarray], fmt: str) -> bytes:
    """One attributions shard: ``.npz`` (``id`` + the arrays) or TFRecord (one ``tf.train.Example``
    per example: ``id`` bytes, ``<name>`` flat floats, ``<name>_shape`` int64)."""
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, id=np.asarray(ids, dtype=str), **arrays)
        return buf.getvalue()
    import tensorflow as tf

    payloads = []
    for i, rid in enumerate(ids):
        feats = {"id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rid.encode()]))}
        for name, a in arrays.items():
            v = np.asarray(a[i], np.float32)
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=v.reshape(-1)))
            feats[name + "_shape"] = tf.train.Feature(int64_list=tf.train.Int64List(value=list(v.shape)))
        payloads.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return _tfrecord_bytes(payloads)


def table_columns(ids, rows: dict[str, Any], metrics) -> dict[str, np.ndarray]:
    """The per-example table: ``id``, ``target``, ``score`` and the requested metrics, in that order."""
    cols = {
        "id": np.asarray(ids, dtype=object),
        "target": np.asarray(rows["target"], np.int64).reshape(-1),
        "score": np.asarray(rows["score"], np.float64).reshape(-1),
    }
    for m in METRICS:
        if m in metrics:
            cols[m] = np.asarray(rows[m], np.float64).reshape(-1)
    return cols


def table_bytes(cols: dict[str, np.ndarray], kind: str) -> bytes:
    """The table as Parquet (pyarrow) or CSV bytes."""
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"id": pa.string(), "target": pa.int64()}
        table = pa.table(
            {k: pa.array(list(v) if k == "id" else v, type=types.get(k, pa.float64())) for k, v in cols.items()}
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return sink.getvalue().to_pybytes()
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(cols))
    for row in zip(*[cols[k] for k in cols]):
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return buf.getvalue().encode()


def dead_letters_bytes(dead: list[tuple]) -> bytes:
    """JSON lines ``{"id": ..., "reason": ...}``."""
    return "".join(json.dumps({"id": rid, "reason": reason}) + "\n" for rid, reason in dead).encode()


def _read_table(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(str(path))
        return {k: np.asarray(t.column(k).to_pylist(), dtype=object if k == "id" else None) for k in t.column_names}
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    cols = {}
    for j, k in enumerate(header):
        vals = [r[j] for r in body]
        cols[k] = (
            np.asarray(vals, dtype=object)
            if k == "id"
            else np.asarray([int(v) for v in vals], np.int64)
            if k == "target"
            else np.asarray([float(v) for v in vals], np.float64)
        )
    return cols


def _read_tfrecord_arrays(path: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    ids, arrays = [], {}
    for raw in tf.data.TFRecordDataset(str(path)):
        feats = tf.train.Example.FromString(raw.numpy()).features.feature
        ids.append(feats["id"].bytes_list.value[0].decode())
        for name in feats:
            if name == "id" or name.endswith("_shape"):
                continue
            shape = tuple(feats[name + "_shape"].int64_list.value)
            arrays.setdefault(name, []).append(np.asarray(feats[name].float_list.value, np.float32).reshape(shape))
    out = {"id": np.asarray(ids, dtype=str)}
    out.update({k: np.stack(v) for k, v in arrays.items()})
    return out


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    return _read_tfrecord_arrays(path)


def _shard_name(path: Path) -> str:
    """``attributions-00003.npz`` -> ``00003``; ``examples-00001-of-00004.parquet`` -> ``00001-of-00004``."""
    return path.name.split("-", 1)[1].split(".", 1)[0]


def _read_dead_letters(path: Path) -> list[tuple]:
    dead = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            dead.append((d["id"], d["reason"]))
    return dead


def read_results(out) -> dict[str, Any]:
    """Everything an :func:`explain_dataset` (or Beam) run wrote into ``out``, concatenated over shards.

    Returns a dict: ``id`` (str array), the attribution arrays (``attributions``, or the split
    pair), ``table`` (dict of columns, rows in the same order as ``id``), ``dead_letters``
    (list of ``(id, reason)``) and ``summary`` (``summary.json``, or ``None`` for a run that did
    not finish). Shards are matched by name, so the folder reads back even where ids repeat.
    """
    out = Path(out)
    tables = {_shard_name(f): f for f in out.glob("examples-*") if f.suffix in (".parquet", ".csv")}
    arrays: dict[str, list] = {}
    table: dict[str, list] = {}
    for f in sorted(out.glob("attributions-*")):
        if f.suffix not in (".npz", ".tfrecord"):
            continue
        name = _shard_name(f)
        if name not in tables:  # a shard cut short before its table: not part of the results
            continue
        part = _read_arrays(f)
        cols = _read_table(tables[name])
        ids = part.get("id", np.asarray([], dtype=str))
        if [str(i) for i in cols.get("id", [])] != [str(i) for i in ids.tolist()]:
            raise ValueError(f"{out}: shard {name}: the table and the attributions list different ids")
        if len(ids) == 0:  # a shard whose records all became dead letters
            continue
        for k, v in part.items():
            arrays.setdefault(k, []).append(v)
        for k, v in cols.items():
            table.setdefault(k, []).append(v)
    res: dict[str, Any] = {k: np.concatenate(v) for k, v in arrays.items()}
    if "id" not in res:
        res["id"] = np.asarray([], dtype=str)
    res["table"] = {k: np.concatenate(v) for k, v in table.items()}
    dead = []
    for f in sorted(out.glob("dead_letters-*.jsonl")):
        dead.extend(_read_dead_letters(f))
    res["dead_letters"] = dead
    summary = out / "summary.json"
    res["summary"] = json.loads(summary.read_text()) if summary.exists() else None
    return res


class RunFolder:
    """One run's output folder: where shard ``k`` goes, which shards are finished, ``run.json``.

    Parameters
    ----------
    out : path
        The folder (created).
    fmt : {"npz", "tfrecord"}
        Attribution shards.
    table : {"parquet", "csv"}
        The per-example table.
    """

    def __init__(self, out, fmt: str = "npz", table: str = "parquet"):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.fmt, self.table = fmt, table
        self.array_suffix = ".npz" if fmt == "npz" else ".tfrecord"

    @property
    def run_file(self) -> Path:
        return self.out / "run.json"

    def result_files(self) -> list[Path]:
        return sorted({f for p in RESULT_GLOBS for f in self.out.glob(p)})

    def clear(self) -> None:
        """Delete every file of an earlier run (``overwrite=True``)."""
        for f in self.result_files():
            f.unlink()
        for f in self.out.glob("*.tmp"):
            f.unlink()

    def read_config(self) -> dict | None:
        return json.loads(self.run_file.read_text()) if self.run_file.exists() else None

    def write_config(self, config: dict) -> None:
        atomic_write(self.run_file, json.dumps(config, indent=1, sort_keys=True).encode())

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.out / "summary.json", json.dumps(summary, indent=1, sort_keys=True).encode())

    def paths(self, k: int):
        """``(attributions, table, dead letters, inputs digest)`` of shard ``k``."""
        return (
            self.out / f"attributions-{k:05d}{self.array_suffix}",
            self.out / f"examples-{k:05d}.{self.table}",
            self.out / f"dead_letters-{k:05d}.jsonl",
            self.out / f"inputs-{k:05d}.sha1",
        )

    def finished(self) -> list[int]:
        """The shards whose table exists (written last, so complete)."""
        done = []
        for f in self.out.glob(f"examples-*.{self.table}"):
            try:
                done.append(int(f.stem.split("-")[1]))
            except (IndexError, ValueError):
                continue
        return sorted(done)

    def shard_digest(self, k: int) -> str | None:
        p = self.paths(k)[3]
        return p.read_text().strip() if p.exists() else None

    def shard_counts(self, k: int):
        """``(results, dead letters, ids)`` of a finished shard."""
        _, t_path, d_path, _ = self.paths(k)
        ids = [str(i) for i in _read_table(t_path)["id"]]
        dead = _read_dead_letters(d_path) if d_path.exists() else []
        return len(ids), len(dead), ids + [str(d[0]) for d in dead]

    def write_shard(self, k: int, ids, arrays, rows, metrics, dead, digest: str) -> list[str]:
        """Write shard ``k``: attributions, dead letters, the inputs' digest, then the table (last)."""
        a_path, t_path, d_path, i_path = self.paths(k)
        atomic_write(a_path, arrays_bytes(ids, arrays, self.fmt))
        if dead:
            atomic_write(d_path, dead_letters_bytes(dead))
        elif d_path.exists():
            d_path.unlink()
        atomic_write(i_path, (digest + "\n").encode())
        atomic_write(t_path, table_bytes(table_columns(ids, rows, metrics), self.table))
        return [str(p) for p in (a_path, t_path, d_path, i_path) if p.exists()]
