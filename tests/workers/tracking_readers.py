"""Readers of what the experiment trackers wrote, for tests: TensorBoard event files and W&B offline run files."""

from __future__ import annotations

import struct
from pathlib import Path


def tensorboard_steps(log_dir: Path, tag: str) -> list[int]:
    """The steps of `tag`'s points as TensorBoard shows them: every event file in `log_dir` (one per trainer
    process), in order, with purges applied."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert any(log_dir.glob("events.out.tfevents.*")), f"no event files in {log_dir}"
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def wandb_records(run_file: str) -> list:
    """The records of an offline W&B run file, in order (wandb ships no reader: the file is LevelDB-log framed,
    a 7-byte header per fragment in 32 KiB blocks, each record a `wandb_internal_pb2.Record`)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf, records = Path(run_file).read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the block's tail is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last fragment of one
            record = pb.Record()
            record.ParseFromString(buf)
            records.append(record)
            buf = b""
    return records


def wandb_history(run_file: str) -> list[dict[str, str]]:
    """The logged rows ({key: JSON value}, with W&B's `_step`) of an offline W&B run file."""
    return [{item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
            for r in wandb_records(run_file) if r.WhichOneof("record_type") == "history"]
