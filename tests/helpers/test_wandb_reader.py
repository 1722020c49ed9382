"""Tests for the W&B offline run-file reader (real offline runs + synthetic files)."""

from __future__ import annotations

import os
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from .wandb_reader import (
    BLOCK_SIZE,
    CHECKED_WANDB,
    CHUNK_HEADER_SIZE,
    WANDB_HEADER,
    TruncatedRecordWarning,
    find_run_file,
    history,
    images,
    installed_wandb_is_checked,
    iter_record_payloads,
    read_records,
    scalars,
    summary,
    tables,
    wait_for_run_file,
)

BLOB = "".join(chr(97 + i % 26) for i in range(70_000))  # > 2 blocks: FIRST/MIDDLE/LAST chunks
IMAGE = np.random.default_rng(0).integers(0, 256, size=(8, 6, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- #
# helpers / fixtures
# --------------------------------------------------------------------------- #


def _frame(payloads: list[bytes], header: bytes = WANDB_HEADER) -> bytes:
    """Independent writer mirroring wandb-core's leveldb.Writer (CRC-32/IEEE)."""
    buf = bytearray(header)
    for payload in payloads:
        first = True
        while True:
            left = BLOCK_SIZE - len(buf) % BLOCK_SIZE
            if left < CHUNK_HEADER_SIZE:
                buf += bytes(left)
                left = BLOCK_SIZE
            n = min(len(payload), left - CHUNK_HEADER_SIZE)
            chunk, payload = payload[:n], payload[n:]
            last = not payload
            ctype = (1 if last else 2) if first else (4 if last else 3)
            buf += struct.pack("<IHB", zlib.crc32(bytes([ctype]) + chunk), n, ctype) + chunk
            first = False
            if last:
                break
    return bytes(buf)


def _offline_env(mp: pytest.MonkeyPatch, root: Path) -> None:
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(root),
        "WANDB_CONFIG_DIR": str(root / ".config"),
        "WANDB_CACHE_DIR": str(root / ".cache"),
        "WANDB_DATA_DIR": str(root / ".data"),
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
    }.items():
        mp.setenv(name, value)
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME"):
        mp.delenv(name, raising=False)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    """One real offline run via wandb.init; returns the dir passed as dir=."""
    wandb = pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("wandb_plain")
    with pytest.MonkeyPatch.context() as mp:
        _offline_env(mp, root)
        run = wandb.init(mode="offline", dir=root, project="t")
        try:
            run.log({"a": 1.5, "b/c": 2}, step=3)
            run.log({"blob": BLOB}, step=4)
            run.log({"a": 2.5, "nested": {"x": -1.0}}, step=5)
            run.log({"tbl": wandb.Table(columns=["name", "score"], data=[["p", 0.5], ["q", 1.25]])}, step=6)
            run.log({"img": wandb.Image(IMAGE)}, step=7)
            run.summary["final"] = 9
        finally:
            run.finish()
    return root


@pytest.fixture(scope="module")
def plain_file(plain_run) -> Path:
    return wait_for_run_file(plain_run, timeout=60)


# --------------------------------------------------------------------------- #
# version pin
# --------------------------------------------------------------------------- #


def test_installed_wandb_inside_checked_range():
    inside, version = installed_wandb_is_checked()
    if not inside:
        pytest.skip(
            f"installed wandb {version} is outside CHECKED_WANDB={CHECKED_WANDB}: the .wandb format "
            "(header, CRC, history encoding) was not verified for it; rerun tests/helpers and update the pin"
        )
    assert inside


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.31.0", True), ("0.31.7", True), ("0.31.1rc1", True), ("0.30.9", False), ("0.32.0", False)],
)
def test_checked_range_membership(version, expected):
    assert installed_wandb_is_checked(version) == (expected, version)


# --------------------------------------------------------------------------- #
# real offline runs
# --------------------------------------------------------------------------- #


def test_plain_run_file_is_bit_exact_with_reference_framing(plain_file):
    """Re-framing the decoded payloads with the independent writer reproduces the file byte for byte,
    which pins header bytes, block alignment (absolute offsets) and the CRC variant."""
    data = plain_file.read_bytes()
    assert data[:7] == b":W&B\xe1\xbe\x00"
    assert len(data) > 2 * BLOCK_SIZE  # the blob forces multi-block, multi-chunk records
    payloads = [p for _, p in iter_record_payloads(data)]
    assert _frame(payloads) == data


def test_plain_run_history_scalars_tables_images(plain_run, plain_file):
    records = read_records(plain_run)  # a directory is resolved with find_run_file
    assert records == read_records(plain_file)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[0] == "header" and "run" in kinds and kinds[-1] == "exit"

    rows = history(records)
    assert [row["_step"] for row in rows] == [3, 4, 5, 6, 7]
    assert scalars(records, "a") == [(3, 1.5), (5, 2.5)]
    assert scalars(records, "b/c") == [(3, 2)]
    assert scalars(records, "nested/x") == [(5, -1.0)]
    assert scalars(records, "blob") == [(4, BLOB)]
    assert scalars(records, "missing") == []

    tbls = tables(records, plain_file.parent)
    assert list(tbls) == ["tbl"]
    assert tbls["tbl"] == [{"columns": ["name", "score"], "data": [["p", 0.5], ["q", 1.25]]}]
    assert rows[3]["tbl"]["_type"] == "table-file"
    assert rows[3]["tbl"]["path"].startswith("media/table/")

    imgs = images(records, plain_file)  # the .wandb path works as run_dir too
    assert list(imgs) == ["img"]
    (img,) = imgs["img"]
    assert img.step == 7
    assert img.path.startswith("media/images/") and img.path.endswith(".png")
    assert (img.meta["_type"], img.meta["width"], img.meta["height"]) == ("image-file", 6, 8)
    assert img.local_path is not None and img.local_path.is_file()
    from PIL import Image

    with Image.open(img.local_path) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), IMAGE)
    assert images(records)["img"][0].local_path is None

    summ = summary(records)
    assert summ["a"] == 2.5 and summ["b/c"] == 2 and summ["nested/x"] == -1.0
    assert summ["final"] == 9 and summ["_step"] == 7
    assert summ["tbl"]["_type"] == "table-file" and summ["img"]["_type"] == "image-file"


def test_lightning_wandb_logger_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    loggers = pytest.importorskip("lightning.pytorch.loggers")
    _offline_env(monkeypatch, tmp_path)

    logger = loggers.WandbLogger(offline=True, save_dir=tmp_path, project="t")
    try:
        logger.log_metrics({"x": 0.25}, step=7)
        logger.experiment.log({"tbl": wandb.Table(columns=["k", "v"], data=[["u", 1], ["w", 2]])})
    finally:
        logger.experiment.finish()

    run_file = wait_for_run_file(tmp_path, timeout=60)
    records = read_records(run_file)
    # WandbLogger logs its step as the metric "trainer/global_step"; wandb's own _step counts calls.
    assert scalars(records, "x", step_key="trainer/global_step") == [(7, 0.25)]
    assert scalars(records, "x") == [(0, 0.25)]
    assert tables(records, run_file.parent) == {"tbl": [{"columns": ["k", "v"], "data": [["u", 1], ["w", 2]]}]}
    assert [row["_step"] for row in history(records)] == [0, 1]


# --------------------------------------------------------------------------- #
# corruption and truncation (copies of the real run file)
# --------------------------------------------------------------------------- #


def _record_offsets(data: bytes) -> list[tuple[int, int]]:
    return [(off, len(p)) for off, p in iter_record_payloads(data)]


def test_flipped_byte_raises_with_crc_and_offset(plain_file, tmp_path):
    data = bytearray(plain_file.read_bytes())
    offsets = _record_offsets(bytes(data))
    off, length = next(
        (o, n) for o, n in offsets[len(offsets) // 2 :] if n > 8 and o % BLOCK_SIZE + CHUNK_HEADER_SIZE + n <= BLOCK_SIZE
    )  # a record held in a single FULL chunk
    data[off + CHUNK_HEADER_SIZE + length // 2] ^= 0x01
    bad = tmp_path / "run-bad.wandb"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"crc32 mismatch .* at offset {off}\b"):
        read_records(bad)


def test_bad_header_and_version_raise(plain_file, tmp_path):
    data = plain_file.read_bytes()
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b":W&C" + data[4:])
    with pytest.raises(ValueError, match="not a W&B run file.*offset 0"):
        read_records(bad)
    bad.write_bytes(data[:6] + b"\x01" + data[7:])
    with pytest.raises(ValueError, match="unsupported W&B log version 1 at offset 6"):
        read_records(bad)


def _cut_points(data: bytes) -> dict[str, tuple[int, int]]:
    """name -> (cut length, number of complete records before the cut)."""
    offsets = _record_offsets(data)
    last_off, last_len = offsets[-1]
    big = next(i for i, (_, n) in enumerate(offsets) if n > BLOCK_SIZE)
    big_off, _ = offsets[big]
    return {
        "mid-payload": (last_off + CHUNK_HEADER_SIZE + last_len // 2, len(offsets) - 1),
        "mid-chunk-header": (last_off + 3, len(offsets) - 1),
        "mid-multi-chunk-record": (big_off + BLOCK_SIZE + 100, big),
        "inside-file-header": (4, 0),
    }


@pytest.mark.parametrize("where", ["mid-payload", "mid-chunk-header", "mid-multi-chunk-record", "inside-file-header"])
def test_truncation_returns_complete_records_with_warning(plain_file, tmp_path, where):
    data = plain_file.read_bytes()
    full = read_records(plain_file)
    cut, n_complete = _cut_points(data)[where]
    cut_file = tmp_path / "run-cut.wandb"
    cut_file.write_bytes(data[:cut])
    with pytest.warns(TruncatedRecordWarning, match="truncated at offset"):
        got = read_records(cut_file)
    assert got == full[:n_complete]
    assert 0 < n_complete or where == "inside-file-header"


def test_zero_filled_tail_is_truncation(plain_file, tmp_path):
    data = plain_file.read_bytes()
    full = read_records(plain_file)
    last_off, _ = _record_offsets(data)[-1]
    crashed = tmp_path / "run-crashed.wandb"
    crashed.write_bytes(data[:last_off] + bytes(len(data) - last_off + 5000))  # e.g. ext4 after a crash
    with pytest.warns(TruncatedRecordWarning, match="zero-filled tail"):
        assert read_records(crashed) == full[:-1]


def test_intact_file_reads_without_warnings(plain_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedRecordWarning)
        assert len(read_records(plain_file)) > 5


# --------------------------------------------------------------------------- #
# synthetic framing edge cases
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("tail", range(0, 9))
def test_block_tail_padding_roundtrip(tail):
    """A record that leaves `tail` bytes in block 0: < 7 are zero padding, >= 7 hold the next header."""
    first = bytes(BLOCK_SIZE - len(WANDB_HEADER) - CHUNK_HEADER_SIZE - tail)
    payloads = [first, b"second", b"", b"x" * 3 * BLOCK_SIZE, b"end"]
    data = _frame(payloads)
    assert [p for _, p in iter_record_payloads(data)] == payloads
    # The file may also end right inside the padding (wandb pads lazily, on the next write).
    assert [p for _, p in iter_record_payloads(_frame([first]))] == [first]


def test_random_payload_sizes_roundtrip():
    rng = np.random.default_rng(20240611)
    payloads = [rng.bytes(int(n)) for n in rng.integers(0, 3 * BLOCK_SIZE, size=40)]
    data = _frame(payloads)
    got = list(iter_record_payloads(data))
    assert [p for _, p in got] == payloads
    assert got[0][0] == len(WANDB_HEADER)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[: BLOCK_SIZE - 3] + b"\x01\x00\x00" + d[BLOCK_SIZE:], r"non-zero block padding at offset \d+"),
        (lambda d: d[:11] + struct.pack("<H", BLOCK_SIZE) + d[13:], r"offset 7 has length 32768, which overflows"),
        (lambda d: d[:13] + b"\x09" + d[14:], r"invalid chunk type 9 at offset 7"),
    ],
    ids=["dirty-padding", "length-overflow", "bad-type"],
)
def test_framing_corruption_raises(mutate, message):
    data = _frame([bytes(BLOCK_SIZE - 7 - 7 - 3), b"next"])
    with pytest.raises(ValueError, match=message):
        list(iter_record_payloads(mutate(data)))


def test_chunk_sequence_errors():
    def chunk(ctype: int, payload: bytes) -> bytes:
        return struct.pack("<IHB", zlib.crc32(bytes([ctype]) + payload), len(payload), ctype) + payload

    with pytest.raises(ValueError, match="LAST chunk at offset 7 without a preceding FIRST"):
        list(iter_record_payloads(WANDB_HEADER + chunk(4, b"a")))
    with pytest.raises(ValueError, match="FULL chunk at offset 15 inside the record started at offset 7"):
        list(iter_record_payloads(WANDB_HEADER + chunk(2, b"a") + chunk(1, b"b")))


def test_undecodable_protobuf_reports_offset(tmp_path):
    bad = tmp_path / "run-proto.wandb"
    bad.write_bytes(_frame([b"\xff\xff\xff"]))
    with pytest.raises(ValueError, match="record at offset 7 is not a valid Record protobuf"):
        read_records(bad)


def test_wait_for_run_file_waits_for_the_final_block(plain_file, tmp_path):
    """Replays what wandb 0.31 does: finish() returns with only the full blocks on disk."""
    data = plain_file.read_bytes()
    run_dir = tmp_path / "wandb" / "offline-run-20250101_000000-abcd"
    run_dir.mkdir(parents=True)
    target = run_dir / "run-abcd.wandb"
    cut = len(data) // BLOCK_SIZE * BLOCK_SIZE
    target.write_bytes(data[:cut])
    timer = threading.Timer(0.2, target.write_bytes, args=(data,))
    timer.start()
    try:
        t0 = time.monotonic()
        assert wait_for_run_file(tmp_path, timeout=30) == target
        assert time.monotonic() - t0 >= 0.15
    finally:
        timer.join()
    assert read_records(target) == read_records(plain_file)


def test_wait_for_run_file_times_out_without_exit_record(tmp_path):
    run_file = tmp_path / "offline-run-20250101_000000-zzzz" / "run-zzzz.wandb"
    run_file.parent.mkdir()
    run_file.write_bytes(WANDB_HEADER)
    with pytest.raises(TimeoutError, match="does not end with a complete 'exit' record"):
        wait_for_run_file(tmp_path, timeout=0.1)
    with pytest.raises(TimeoutError, match="no run file yet"):
        wait_for_run_file(tmp_path / "empty", timeout=0.05)


# --------------------------------------------------------------------------- #
# find_run_file
# --------------------------------------------------------------------------- #


def test_find_run_file_picks_newest_and_errors_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no W&B offline run file under"):
        find_run_file(tmp_path)
    old = tmp_path / "wandb" / "offline-run-20250101_000000-aaaa" / "run-aaaa.wandb"
    new = tmp_path / "offline-run-20240101_000000-bbbb" / "run-bbbb.wandb"
    for i, p in enumerate((old, new)):
        p.parent.mkdir(parents=True)
        p.write_bytes(WANDB_HEADER)
        os.utime(p, ns=(1_700_000_000_000_000_000 + i, 1_700_000_000_000_000_000 + i * 10**9))
    assert find_run_file(tmp_path) == new  # by mtime, not by the timestamp in the dir name
    assert find_run_file(old.parent) == old
    assert read_records(new) == []
