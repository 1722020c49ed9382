"""Reader for W&B offline run files (``run-<id>.wandb``), for integration tests.

wandb >= 0.18 writes the transaction log from its Go core (``wandb-core``) and
0.31 ships no Python reader for it, so this module decodes the file itself.

File format (checked against wandb 0.31.0: ``core/pkg/leveldb/record.go`` and
``crc.go`` of the wandb sources, and byte-for-byte against files written by the
installed ``wandb-core``):

* A 7-byte W&B header: ident ``b":W&B"``, magic ``0xBEE1`` as uint16
  little-endian (bytes ``e1 be``), version byte ``0``; i.e.
  ``3a 57 26 42 e1 be 00``.
* Then LevelDB-log framing. The file is cut into 32 KiB blocks at *absolute*
  file offsets (the header occupies the first 7 bytes of block 0). Each chunk
  is ``crc32:uint32le | length:uint16le | type:uint8 | data[length]`` and never
  straddles a block boundary; a block tail shorter than 7 bytes is zero
  padding. Types: FULL=1, FIRST=2, MIDDLE=3, LAST=4.
* The checksum is plain CRC-32/IEEE (``zlib.crc32``, *not* LevelDB's masked
  CRC-32C) over the type byte followed by the data, unmasked.
* Each reassembled record is a serialized ``wandb_internal_pb2.Record``.

History and summary values are JSON in ``value_json``. wandb-core flattens
nested dicts into one item per leaf with a multi-part ``nested_key``; media
objects (tables, images) arrive as one item per field (``("tbl", "_type")``,
``("tbl", "path")``, ...). :func:`history` and :func:`summary` join key parts
with ``"/"`` and regroup the fields of a media object into one dict under its
key, so ``row["tbl"] == {"_type": "table-file", "path": "media/table/...", ...}``.
Note the join is lossy in one way: ``{"b/c": 1}`` and ``{"b": {"c": 1}}`` both
read back as key ``"b/c"``.

wandb 0.31 quirk: in offline mode ``run.finish()`` returns before wandb-core
has flushed the last, partial 32 KiB block of the transaction log (the file
is briefly a whole number of blocks, cut mid-record; the rest lands ~10 ms
later). Call :func:`wait_for_run_file` after ``finish()`` instead of reading
right away.

Typical use::

    run.finish()
    run_file = wait_for_run_file(tmp_path)
    records = read_records(run_file)
    assert scalars(records, "loss") == [(0, 1.5), (1, 1.25)]
    tbl = tables(records, run_file)["preds"][-1]
"""

from __future__ import annotations

import json
import os
import struct
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wandb.proto.wandb_internal_pb2 import Record

__all__ = [
    "BLOCK_SIZE",
    "CHECKED_WANDB",
    "CHUNK_HEADER_SIZE",
    "WANDB_HEADER",
    "MediaFile",
    "TruncatedRecordWarning",
    "find_run_file",
    "history",
    "images",
    "installed_wandb_is_checked",
    "iter_record_payloads",
    "read_records",
    "scalars",
    "summary",
    "tables",
    "wait_for_run_file",
]

#: wandb versions this reader was checked against (``packaging`` specifiers, ANDed).
CHECKED_WANDB: tuple[str, ...] = (">=0.31", "<0.32")

#: The 7-byte file header: ``":W&B"``, magic 0xBEE1 (uint16 LE), version 0.
WANDB_HEADER = b":W&B" + struct.pack("<H", 0xBEE1) + bytes([0])
#: LevelDB log block size; blocks start at absolute multiples of it.
BLOCK_SIZE = 32 * 1024
#: crc32 (4) + length (2) + type (1).
CHUNK_HEADER_SIZE = 7

_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_NAMES = {_FULL: "FULL", _FIRST: "FIRST", _MIDDLE: "MIDDLE", _LAST: "LAST"}
_CHUNK_HEADER = struct.Struct("<IHB")


class TruncatedRecordWarning(UserWarning):
    """The file ends inside a record (e.g. the writer was killed) or holds zero-filled gaps."""


@dataclass(frozen=True)
class MediaFile:
    """A media object (image, ...) referenced from a history row.

    Attributes:
        step: The row's ``_step``.
        path: Path as logged, relative to the run's ``files/`` directory.
        meta: All logged fields of the media dict (``_type``, ``width``, ...).
        local_path: The file on disk, when a run directory was given and the
            file exists; otherwise ``None``.
    """

    step: int | None
    path: str
    meta: dict[str, Any] = field(repr=False)
    local_path: Path | None = None


# --------------------------------------------------------------------------- #
# wandb version pin
# --------------------------------------------------------------------------- #


def installed_wandb_is_checked(version: str | None = None) -> tuple[bool, str]:
    """Whether a wandb version lies inside :data:`CHECKED_WANDB`.

    Args:
        version: Version string to test; defaults to the installed wandb's.

    Returns:
        ``(inside, version)``; ``version`` is ``"not installed"`` when wandb
        cannot be imported (and ``inside`` is then ``False``).
    """
    from packaging.specifiers import SpecifierSet

    if version is None:
        try:
            import wandb
        except ImportError:
            return False, "not installed"
        version = wandb.__version__
    return SpecifierSet(",".join(CHECKED_WANDB)).contains(version, prereleases=True), version


# --------------------------------------------------------------------------- #
# framing
# --------------------------------------------------------------------------- #


def _truncated(source: str, offset: int, what: str) -> None:
    warnings.warn(
        f"{source}: file truncated at offset {offset} ({what}); "
        f"returning only the complete records before it",
        TruncatedRecordWarning,
        stacklevel=4,
    )


def iter_record_payloads(data: bytes, source: str = "<bytes>") -> Iterator[tuple[int, bytes]]:
    """Undo the header and LevelDB-log framing of a whole ``.wandb`` file.

    Args:
        data: The complete file contents.
        source: Name used in error and warning messages.

    Yields:
        ``(offset, payload)`` per record, ``offset`` being the file offset of
        the record's first chunk header.

    Raises:
        ValueError: Bad header, checksum mismatch, chunk overflowing its
            block, non-zero block padding, or an impossible chunk sequence.
            The message names the file offset.

    Warns:
        TruncatedRecordWarning: The data ends inside a chunk or a multi-chunk
            record, or continues only with zero bytes (a crashed writer). The
            iteration stops after the last complete record.
    """
    size = len(data)
    hlen = len(WANDB_HEADER)
    if size < hlen:
        if data == WANDB_HEADER[:size]:
            _truncated(source, size, "inside the 7-byte W&B header")
            return
        raise ValueError(f"{source}: not a W&B run file: header at offset 0 is {data!r}, expected {WANDB_HEADER!r}")
    if data[:4] != WANDB_HEADER[:4] or data[4:6] != WANDB_HEADER[4:6]:
        raise ValueError(f"{source}: not a W&B run file: header at offset 0 is {data[:hlen]!r}, expected {WANDB_HEADER!r}")
    if data[6] != WANDB_HEADER[6]:
        raise ValueError(f"{source}: unsupported W&B log version {data[6]} at offset 6 (reader knows {WANDB_HEADER[6]})")

    off = hlen
    parts: list[bytes] = []
    record_start = -1  # offset of the FIRST chunk of the record being assembled
    while True:
        block_left = BLOCK_SIZE - off % BLOCK_SIZE
        if block_left < CHUNK_HEADER_SIZE:  # block trailer: zero padding (may be cut by EOF)
            pad = data[off : off + block_left]
            if pad.count(0) != len(pad):
                raise ValueError(f"{source}: non-zero block padding at offset {off}")
            off += block_left
            if off >= size and record_start < 0:
                return
            if off >= size:
                _truncated(source, record_start, "inside a multi-chunk record")
                return
            continue
        if off >= size:
            if record_start >= 0:
                _truncated(source, record_start, "inside a multi-chunk record")
            return
        if size - off < CHUNK_HEADER_SIZE:
            _truncated(source, record_start if record_start >= 0 else off, "inside a chunk header")
            return

        crc, length, ctype = _CHUNK_HEADER.unpack_from(data, off)
        if crc == 0 and length == 0 and ctype == 0:
            # A zero chunk header. wandb never writes one; it appears when a
            # crashed writer leaves a zero-filled tail (or a file was mmapped).
            if data.count(0, off) == size - off:
                _truncated(source, record_start if record_start >= 0 else off, "zero-filled tail")
                return
            block_end = min(off + block_left, size)
            if record_start < 0 and data.count(0, off, block_end) == block_end - off:
                # Same recovery as wandb's Go reader: skip a zeroed block tail.
                warnings.warn(f"{source}: skipped zeroed block tail at offset {off}", TruncatedRecordWarning, stacklevel=3)
                off = block_end
                continue
            raise ValueError(f"{source}: zero chunk header at offset {off} followed by non-zero data")
        if ctype not in _TYPE_NAMES:
            raise ValueError(f"{source}: invalid chunk type {ctype} at offset {off}")
        end = off + CHUNK_HEADER_SIZE + length
        if length > block_left - CHUNK_HEADER_SIZE:
            raise ValueError(
                f"{source}: chunk at offset {off} has length {length}, which overflows its block "
                f"(only {block_left - CHUNK_HEADER_SIZE} bytes left)"
            )
        if end > size:
            _truncated(source, record_start if record_start >= 0 else off, f"{_TYPE_NAMES[ctype]} chunk cut short")
            return
        payload = data[off + CHUNK_HEADER_SIZE : end]
        actual = zlib.crc32(payload, zlib.crc32(bytes([ctype])))
        if actual != crc:
            raise ValueError(
                f"{source}: crc32 mismatch in {_TYPE_NAMES[ctype]} chunk at offset {off} "
                f"(stored {crc:#010x}, computed {actual:#010x}); file is corrupt"
            )

        if ctype == _FULL or ctype == _FIRST:
            if record_start >= 0:
                raise ValueError(
                    f"{source}: {_TYPE_NAMES[ctype]} chunk at offset {off} inside the record started at offset {record_start}"
                )
            if ctype == _FULL:
                yield off, payload
            else:
                record_start, parts = off, [payload]
        else:
            if record_start < 0:
                raise ValueError(f"{source}: {_TYPE_NAMES[ctype]} chunk at offset {off} without a preceding FIRST chunk")
            parts.append(payload)
            if ctype == _LAST:
                yield record_start, b"".join(parts)
                record_start, parts = -1, []
        off = end


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """Read every record of a ``.wandb`` file.

    Args:
        path: A ``run-*.wandb`` file, or a directory handed to
            :func:`find_run_file`.

    Returns:
        The ``wandb_internal_pb2.Record`` messages in file order.

    Raises:
        ValueError: Corruption (bad header, crc mismatch, bad framing,
            undecodable protobuf); the message names the file offset.
        FileNotFoundError: ``path`` is a directory without a run file.

    Warns:
        TruncatedRecordWarning: The file ends inside a record; the complete
            records before it are returned.
    """
    from google.protobuf.message import DecodeError
    from wandb.proto.wandb_internal_pb2 import Record

    p = Path(path)
    if p.is_dir():
        p = find_run_file(p)
    records = []
    for offset, payload in iter_record_payloads(p.read_bytes(), source=str(p)):
        rec = Record()
        try:
            rec.ParseFromString(payload)
        except DecodeError as exc:
            raise ValueError(f"{p}: record at offset {offset} is not a valid Record protobuf: {exc}") from exc
        records.append(rec)
    return records


def find_run_file(root_dir: str | os.PathLike[str]) -> Path:
    """The newest offline run file under a W&B save directory.

    Looks at ``<root>/wandb/offline-run-*/run-*.wandb`` and
    ``<root>/offline-run-*/run-*.wandb`` (``root`` being what was passed as
    ``dir=``/``save_dir=``/``WANDB_DIR``, or the ``wandb`` dir itself), and at
    ``<root>/run-*.wandb`` when ``root`` is a run directory.

    Args:
        root_dir: Directory to search.

    Returns:
        The run file with the latest modification time (ties broken by name).

    Raises:
        FileNotFoundError: No run file matches; the message lists the patterns.
    """
    root = Path(root_dir)
    patterns = ("wandb/offline-run-*/run-*.wandb", "offline-run-*/run-*.wandb", "run-*.wandb")
    found = {p for pat in patterns for p in root.glob(pat) if p.is_file()}
    if not found:
        raise FileNotFoundError(
            f"no W&B offline run file under {root} (looked for {', '.join(patterns)}); "
            f"did the run use mode='offline' with dir={root}?"
        )
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.parent.name, p.name))


def _is_complete(path: Path) -> bool:
    """True if the file parses without truncation and its last record is ``exit``."""
    from wandb.proto.wandb_internal_pb2 import Record

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            last = None
            for _, payload in iter_record_payloads(path.read_bytes(), source=str(path)):
                last = payload
        except ValueError:
            return False
    if any(issubclass(w.category, TruncatedRecordWarning) for w in caught) or last is None:
        return False
    rec = Record()
    rec.ParseFromString(last)
    return rec.WhichOneof("record_type") == "exit"


def wait_for_run_file(
    path: str | os.PathLike[str], timeout: float = 30.0, poll_interval: float = 0.02
) -> Path:
    """Wait until wandb-core has finished writing an offline run file.

    The file counts as finished when it parses without truncation, its last
    record is the ``exit`` record, and its size is unchanged between two
    polls. Needed because ``run.finish()`` can return before the final block
    is written (see the module docstring).

    Args:
        path: A ``run-*.wandb`` file, or a directory for :func:`find_run_file`
            (re-resolved on every poll, so the file may not exist yet).
        timeout: Seconds to wait before giving up.
        poll_interval: Seconds between polls.

    Returns:
        The finished run file.

    Raises:
        TimeoutError: Not finished within ``timeout`` (e.g. the run crashed;
            read it with :func:`read_records`, which tolerates a cut tail).
    """
    deadline = time.monotonic() + timeout
    last_size = -1
    state = "no run file yet"
    while True:
        try:
            p = Path(path)
            if p.is_dir():
                p = find_run_file(p)
            size = p.stat().st_size
            if size == last_size and _is_complete(p):
                return p
            last_size = size
            state = f"{p} has {size} bytes and does not end with a complete 'exit' record"
        except FileNotFoundError:
            state = "no run file yet"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"W&B run file under {path} not finished after {timeout} s: {state}")
        time.sleep(poll_interval)


# --------------------------------------------------------------------------- #
# decoding history / summary
# --------------------------------------------------------------------------- #


def _item_path(item: Any) -> tuple[str, ...]:
    return tuple(item.nested_key) if len(item.nested_key) else (item.key,)


def _set_nested(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[path[-1]] = value


def _regroup(flat: Iterable[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """Join key parts with "/", folding the fields of media objects into one dict."""
    flat = list(flat)
    media = {path[:-1] for path, value in flat if len(path) >= 2 and path[-1] == "_type" and isinstance(value, str)}
    out: dict[str, Any] = {}
    for path, value in flat:
        prefix = next((path[:n] for n in range(1, len(path)) if path[:n] in media), None)
        if prefix is None:
            out["/".join(path)] = value
        else:
            _set_nested(out.setdefault("/".join(prefix), {}), path[len(prefix) :], value)
    return out


def history(records: Iterable[Record]) -> list[dict[str, Any]]:
    """Decode the ``history`` records, one dict per logged row.

    Args:
        records: Output of :func:`read_records`.

    Returns:
        Rows in file order. Keys are ``item.key`` or ``nested_key`` joined with
        ``"/"``; values are ``json.loads(value_json)``. Media objects are
        regrouped into one dict under their key (see the module docstring).
        Every row has ``"_step"`` (taken from the record's step when the items
        lack it).
    """
    rows = []
    for rec in records:
        if rec.WhichOneof("record_type") != "history":
            continue
        hist = rec.history
        row = _regroup((_item_path(it), json.loads(it.value_json)) for it in hist.item)
        if "_step" not in row and hist.HasField("step"):
            row["_step"] = hist.step.num
        rows.append(row)
    return rows


def scalars(records: Iterable[Record], key: str, step_key: str = "_step") -> list[tuple[Any, Any]]:
    """The ``(step, value)`` pairs logged for one key.

    Args:
        records: Output of :func:`read_records`.
        key: History key, ``"/"``-joined for nested keys (``"b/c"``).
        step_key: Row key used as the step; e.g. ``"trainer/global_step"``
            for Lightning's ``WandbLogger``, which logs its step as a metric
            and leaves ``_step`` to wandb's own counter.

    Returns:
        Pairs in logging order, for the rows containing ``key``
        (``step`` is ``None`` if a row lacks ``step_key``).
    """
    return [(row.get(step_key), row[key]) for row in history(records) if key in row]


def summary(records: Iterable[Record]) -> dict[str, Any]:
    """The run summary, replaying every ``summary`` record's updates and removes.

    Args:
        records: Output of :func:`read_records`.

    Returns:
        The final summary, keyed like :func:`history` rows (includes wandb's
        own entries such as ``_step``, ``_runtime`` and ``_wandb/runtime``).
    """
    state: dict[tuple[str, ...], Any] = {}
    for rec in records:
        if rec.WhichOneof("record_type") != "summary":
            continue
        for it in rec.summary.update:
            path = _item_path(it)
            for old in [k for k in state if k[: len(path)] == path or path[: len(k)] == k]:
                del state[old]  # a new value replaces the old subtree / leaf
            state[path] = json.loads(it.value_json)
        for it in rec.summary.remove:
            path = _item_path(it)
            for old in [k for k in state if k[: len(path)] == path]:
                del state[old]
    return _regroup(state.items())


# --------------------------------------------------------------------------- #
# media
# --------------------------------------------------------------------------- #


def _run_dir(run_dir: str | os.PathLike[str]) -> Path:
    p = Path(run_dir)
    return p.parent if p.is_file() else p


def _resolve(run_dir: Path, rel: str) -> Path | None:
    for cand in (run_dir / "files" / rel, run_dir / rel):
        if cand.is_file():
            return cand
    return None


def _media(records: Iterable[Record], type_name: str | tuple[str, ...]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    names = (type_name,) if isinstance(type_name, str) else type_name
    for row in history(records):
        for key, value in row.items():
            if isinstance(value, dict) and value.get("_type") in names:
                yield key, row.get("_step"), value


def tables(records: Iterable[Record], run_dir: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """The ``wandb.Table`` values logged with ``run.log``, parsed.

    An ``INCREMENTAL`` table appears once per log as ``"incremental-table-file"`` holding only
    the rows added since the previous log (``increment_num`` counts them).
    A logged table appears in history as ``{"_type": "table-file", "path":
    "media/table/<key>_<n>_<hash>.table.json", ...}``; the JSON file lives in
    the run's ``files/`` directory.

    Args:
        records: Output of :func:`read_records`.
        run_dir: The ``offline-run-*`` directory, or its ``.wandb`` file.

    Returns:
        ``{key: [table_json, ...]}`` in logging order; each ``table_json`` is
        the file's content (``{"columns": [...], "data": [[...], ...]}``).

    Raises:
        FileNotFoundError: A referenced table file is missing.
    """
    rdir = _run_dir(run_dir)
    out: dict[str, list[dict[str, Any]]] = {}
    for key, step, value in _media(records, ("table-file", "incremental-table-file")):
        local = _resolve(rdir, value["path"])
        if local is None:
            raise FileNotFoundError(f"table {key!r} at step {step}: {value['path']!r} not found under {rdir}/files")
        out.setdefault(key, []).append(json.loads(local.read_text(encoding="utf-8")))
    return out


def images(records: Iterable[Record], run_dir: str | os.PathLike[str] | None = None) -> dict[str, list[MediaFile]]:
    """The ``wandb.Image`` values logged with ``run.log``.

    Args:
        records: Output of :func:`read_records`.
        run_dir: The ``offline-run-*`` directory (or its ``.wandb`` file);
            when given, :attr:`MediaFile.local_path` is filled for files that
            exist.

    Returns:
        ``{key: [MediaFile, ...]}`` in logging order.
    """
    rdir = None if run_dir is None else _run_dir(run_dir)
    out: dict[str, list[MediaFile]] = {}
    for key, step, value in _media(records, "image-file"):
        local = None if rdir is None else _resolve(rdir, value["path"])
        out.setdefault(key, []).append(MediaFile(step=step, path=value["path"], meta=value, local_path=local))
    return out
