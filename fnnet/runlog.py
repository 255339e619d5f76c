"""Run logs: ``fit(..., log="run.csv")`` or ``log="run.jsonl"`` writes one line per epoch.

The records are those of the history (``epoch``, ``loss``, the metrics,
``val_*``, ``lr``, ``time``), written and flushed after every compiled chunk of
epochs, so a log can be watched (``tail -f``) while a long run trains and
holds every finished chunk if the process dies. The format follows the suffix:

* ``.csv``: a header line, then one comma-separated line per epoch;
* ``.jsonl`` (JSON lines): one JSON object per epoch, e.g.
  ``{"epoch": 1, "loss": 0.69, "time": 0.01}``; read it back with
  ``[json.loads(l) for l in open(path)]``.

The file is opened before training starts: a path that cannot be written (a
missing directory, no permission, an unknown suffix) is an error at once and
no training time is lost. A run that starts at epoch 0 replaces the file; a
resumed run (``initial_epoch > 0``) appends to it. Non-finite values are
written as ``nan``/``inf`` in CSV and as ``NaN``/``Infinity`` in JSON lines
(Python's ``json`` reads both).
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["open_log", "RunLog", "FORMATS"]

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


class RunLog:
    """An open log file; :meth:`write` appends a chunk of records (``{name: array}``)."""

    def __init__(self, f, fmt: str, header: bool):
        self.f, self.fmt, self.header, self.columns = f, fmt, header, None

    def write(self, chunk: dict):
        names = [n for n in chunk]
        if self.columns is None:
            self.columns = names
            if self.fmt == "csv" and self.header:
                self.f.write(",".join(names) + "\n")
        n = len(next(iter(chunk.values()))) if chunk else 0
        for i in range(n):
            row = {name: _scalar(chunk[name][i]) for name in self.columns}
            if self.fmt == "csv":
                self.f.write(",".join(repr(v) if isinstance(v, float) else str(v)
                                      for v in row.values()) + "\n")
            else:
                self.f.write(json.dumps(row) + "\n")
        self.f.flush()

    def close(self):
        self.f.close()


def _scalar(v):
    v = np.asarray(v)
    return int(v) if np.issubdtype(v.dtype, np.integer) else float(v)


def open_log(path, where: str = "fit", *, append: bool = False) -> RunLog:
    """Open ``path`` for a run log, or raise a clear error (before any training)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: log must be a path ending in .csv or .jsonl, got "
                        f"{type(path).__name__}")
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"{where}: log={os.fspath(path)!r} has an unknown suffix {suffix!r}; "
                         f"use .csv or .jsonl")
    header = not (append and os.path.exists(path) and os.path.getsize(path) > 0)
    try:
        f = open(path, "a" if append else "w", encoding="utf-8")
    except OSError as err:
        raise type(err)(err.errno, f"{where}: cannot write the log file {os.fspath(path)!r} "
                                   f"({err.strerror}); nothing was trained. Pick a writable "
                                   f"path or create its directory") from err
    return RunLog(f, FORMATS[suffix], header)
