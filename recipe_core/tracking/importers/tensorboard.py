"""TensorBoard event files read as EventAccumulator reads their scalars, streamed on compact arrays: the record
framing and its CRC-32C checked a block at a time, restarts' orphaned points dropped as TensorBoard drops them."""
from __future__ import annotations

import math
import struct
from array import array
from pathlib import Path

import numpy as np

from recipe_core.errors import BadInput
from recipe_core.tracking.importers.series import MAX_SERIES, Budget, FoundRun, Part, check_name
from recipe_core.units import human_bytes

RECORD_BLOCK = 4 << 20  # bytes of an events file read and checked at a time
MAX_RECORD_BYTES = 64 << 20  # one event: a big graph or image fits; TensorBoard's reader reads any declared length


def is_events_file(name: str) -> bool:
    # the names TensorFlow, torch and tensorboardX give them (not TensorBoard's looser "tfevents" anywhere,
    # which also matches macOS "._events.out.tfevents..." resource forks)
    return name.startswith("events.out.tfevents.")


def read_tensorboard(run: FoundRun, budget: Budget) -> tuple[dict, float | None]:
    """{metric: [Part]} and the time of the first event: what TensorBoard's EventAccumulator would show.

    The accumulator itself keeps every point as a Python object (315 MB for 1M scalar events, 40 s), so its
    logic for scalars is reproduced here on compact arrays: legacy simple_value summaries, TF2 0-d tensors
    of the scalars plugin (its name from the metadata on a tag's first event), and the points a restarted job
    orphaned (see _Restarts). One strict read, in file order as the accumulator's own watcher reads them: a
    damaged record refuses the file, where TensorBoard's loader would stop silently and import a truncated run.
    """
    from google.protobuf.message import DecodeError
    from tensorboard.backend.event_processing.event_util import ParseFileVersion
    from tensorboard.compat.proto import event_pb2

    session_start = event_pb2.SessionLog.START
    first_time, file_version, most_recent_step = None, None, -1
    scalars, tensors, plugins, tags = {}, {}, {}, set()  # tensors[tag] is None once it shows it is no scalar
    restarts = _Restarts()

    def held(tag: str) -> None:
        tags.add(tag)
        if len(tags) > MAX_SERIES:
            raise BadInput(f"{label} has more than {MAX_SERIES:,} tags, the limit of metric series per run")

    for path in run.files:
        label, n = run.labels[path], 0
        try:
            for record in _tf_records(path, label):
                event = event_pb2.Event.FromString(record)
                n += 1
                if first_time is None:
                    first_time = event.wall_time
                what, step = event.WhichOneof("what"), event.step
                if what == "file_version":
                    file_version = ParseFileVersion(event.file_version)
                # EventAccumulator._MaybePurgeOrphanedData
                if file_version and file_version >= 2:
                    if what == "session_log" and event.session_log.status == session_start:
                        restarts.purge(step, budget, label)
                elif step < most_recent_step and what == "summary":
                    for value in event.summary.value:  # an empty tag purges every tag (Reservoir.FilterItems)
                        if not value.tag or value.tag in scalars:
                            restarts.purge(step, budget, label, scalars[value.tag] if value.tag else None)
                else:
                    most_recent_step = step
                if what != "summary":
                    continue
                wall, added = event.wall_time, 0
                for value in event.summary.value:
                    tag, kind = value.tag, value.WhichOneof("value")
                    if tag not in plugins and value.HasField("metadata"):  # only a tag's first metadata counts
                        held(tag)
                        plugins[tag] = value.metadata.plugin_data.plugin_name
                    if kind == "simple_value":
                        points = scalars.get(tag)
                        if points is None:
                            held(tag)
                            points = scalars[tag] = _Scalars()
                        added += points.add_after(restarts, step, value.simple_value, wall)
                    elif kind == "tensor":
                        tag = tag or value.node_name  # tensor summaries of the old plugin-asset kind
                        if tensors.get(tag, ()) is None or plugins.get(tag, "scalars") not in ("scalars", ""):
                            continue
                        number = _tensor_scalar(value.tensor)
                        if number is None:
                            tensors[tag] = None
                            continue
                        points = tensors.get(tag)
                        if points is None:
                            held(tag)
                            points = tensors[tag] = _Points()
                        points.add(step, number, wall)
                        added += 1
                if added:
                    budget.take(added, label)
        except BadInput:
            raise
        except DecodeError:
            raise BadInput(f"{label} is corrupt: record {n + 1} is not a TensorBoard event") from None
        except OSError as e:
            raise BadInput(f"{label} could not be read ({type(e).__name__})") from None
        except Exception as e:  # noqa: BLE001 - a well-framed event whose payload is not what its fields say
            raise BadInput(f"{label}: TensorBoard could not read record {n + 1} ({type(e).__name__})") from None

    series = {tag: [points.kept(restarts)] for tag, points in scalars.items()}
    for tag, points in tensors.items():
        if points is not None and plugins.get(tag, "") in ("scalars", ""):
            series.setdefault(tag, []).append(points.part())
    series = {tag: [p for p in parts if len(p)] for tag, parts in series.items()}
    series = {check_name(tag, run.labels[run.files[0]]): parts for tag, parts in series.items() if parts}
    return series, (first_time if series else None)


class _Points:
    """One tag's points while its files stream in: 24 bytes a point."""

    __slots__ = ("step", "value", "wall")

    def __init__(self):
        self.step, self.value, self.wall = array("q"), array("d"), array("d")

    def add(self, step: int, value: float, wall: float) -> None:
        self.step.append(step)
        self.value.append(value)
        self.wall.append(wall)

    def part(self) -> Part:
        return Part(np.frombuffer(self.step, np.int64), np.frombuffer(self.value, np.float64), None,
                     np.frombuffer(self.wall, np.float64))


class _Restarts:
    """EventAccumulator._Purge for scalars (it never purges tensors): a restart (SessionLog.START, in files of
    version 2 and later) drops every tag's points at steps >= its step; in older files, a step going backwards
    drops the points at steps >= it of the tags it carries.

    Worked out once at the end instead of on every restart, which scans every point held (a file of restarts
    then takes hours): a point survives when no purge recorded after it has a step <= its own. Two purges with no
    point added between them are one, so there are never more purges than points; each counts as a point."""

    def __init__(self):
        self.n = 0  # purges so far: a point added after k of them is subject to purges k, k + 1, ...
        self.purge_ids, self.purge_steps = array("q"), array("q")  # the purges of every tag
        self.added = 0  # scalar points added, to any tag
        self.added_at_purge = -1

    def purge(self, step: int, budget: Budget, label: str, tag: _Scalars | None = None) -> None:
        """Purge the points at steps >= step of one tag (None: of every tag)."""
        at = self if tag is None else tag
        now = self.added if tag is None else len(tag.step)
        if at.purge_ids and at.added_at_purge == now:  # no point since the last purge: this one is the same purge
            at.purge_steps[-1] = min(at.purge_steps[-1], step)
            return
        at.purge_ids.append(self.n)
        at.purge_steps.append(step)
        at.added_at_purge = now
        self.n += 1
        budget.take(1, label)


class _Scalars(_Points):
    """A tag's legacy scalars, with what _Restarts needs: where purges happened between its points (16 bytes
    each, counted as a point), and the purges of this tag alone."""

    __slots__ = ("mark_at", "mark_purges", "purge_ids", "purge_steps", "added_at_purge")

    def __init__(self):
        super().__init__()
        self.mark_at, self.mark_purges = array("q"), array("q")  # the points from mark_at[i] on: after mark_purges[i]
        self.purge_ids, self.purge_steps = array("q"), array("q")
        self.added_at_purge = -1

    def add_after(self, restarts: _Restarts, step: int, value: float, wall: float) -> int:
        """Append a point; returns what it costs the budget."""
        marked = restarts.n != (self.mark_purges[-1] if self.mark_purges else 0)
        if marked:
            self.mark_at.append(len(self.step))
            self.mark_purges.append(restarts.n)
        self.add(step, value, wall)
        restarts.added += 1
        return 1 + marked

    def kept(self, restarts: _Restarts) -> Part:
        part = self.part()
        ids = np.concatenate([np.frombuffer(restarts.purge_ids, np.int64), np.frombuffer(self.purge_ids, np.int64)])
        if not len(ids):
            return part
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        steps = np.concatenate([np.frombuffer(restarts.purge_steps, np.int64),
                                np.frombuffer(self.purge_steps, np.int64)])
        lowest = np.minimum.accumulate(steps[order][::-1])[::-1]  # lowest[i]: the lowest step of purges i, i+1, ...
        starts = [0, *self.mark_at]  # the points before the first mark came after no purge
        first = np.searchsorted(ids, [0, *self.mark_purges])  # the first purge each stretch of points is subject to
        keep = np.ones(len(part.step), bool)
        for start, end, i in zip(starts, [*starts[1:], len(part.step)], first.tolist(), strict=True):
            if i < len(ids):
                np.less(part.step[start:end], lowest[i], out=keep[start:end])
        if not keep.all():
            part.keep = keep
        return part


def _tensor_scalar(proto) -> float | None:
    """The number a tensor holds if it holds exactly one; None for anything else (text, images, histograms)."""
    # the declared shape first: make_ndarray would fill a huge declared shape from one value
    dims = proto.tensor_shape.dim
    if dims and math.prod(d.size for d in dims) != 1:  # a scalar's shape has no dims
        return None
    # DT_FLOAT, as torch (float_val) and TF2 (tensor_content) write scalars, without make_ndarray's 24 µs
    if proto.dtype == 1:
        if len(proto.tensor_content) == 4:
            return struct.unpack("<f", proto.tensor_content)[0]
        if not proto.tensor_content and len(proto.float_val) == 1:
            return proto.float_val[0]
    from tensorboard.util import tensor_util

    try:
        arr = tensor_util.make_ndarray(proto)
    except Exception:  # noqa: BLE001 - a hostile tensor: this tag is not a scalar series
        return None
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        return None
    return float(arr.reshape(-1)[0])


def _tf_records(path: Path, label: str):
    """The records of an events file, checked as TensorBoard's reader checks them (the framing, and the CRC-32C of
    each length and payload), read RECORD_BLOCK bytes at a time and checked a block at a time: TensorBoard's reader
    computes the CRCs in pure Python, 14 µs of the ~40 a small scalar event took to import, and reads a record
    of any declared length into memory (three copies of it)."""
    n = 0  # records yielded

    def corrupt() -> BadInput:
        return BadInput(f"{label} is corrupt or truncated after {n} records; TensorBoard cannot read it")

    with open(path, "rb") as f:
        data = f.read(RECORD_BLOCK)
        while data:
            starts, lengths, pos = [], [], 0
            while len(data) - pos >= 12:  # the records wholly in data: length (8 bytes), its CRC, payload, its CRC
                (length,) = struct.unpack_from("<Q", data, pos)
                if length > len(data) - pos - 16:
                    break
                starts.append(pos)
                lengths.append(length)
                pos += 16 + length
            good = _sound_records(data, starts, lengths)
            for start, length in zip(starts[:good], lengths[:good], strict=True):
                n += 1
                yield data[start + 12:start + 12 + length]
            if good < len(starts):
                raise corrupt()
            rest, more = data[pos:], f.read(RECORD_BLOCK)
            if len(rest) >= 12:  # a record longer than what is left: check its length before reading that much
                (length, crc) = struct.unpack_from("<QI", rest)
                if _py_masked_crc32c(rest[:8]) != crc:
                    raise corrupt()
                if length > MAX_RECORD_BYTES:
                    raise BadInput(f"{label}: record {n + 1} declares {human_bytes(length)}, more than the limit of "
                                   f"{human_bytes(MAX_RECORD_BYTES)} for one event")
                more += f.read(max(0, 16 + length - len(rest) - len(more)))
            if not more and rest:
                raise corrupt()  # the file ends inside a record
            data = rest + more


def _sound_records(data: bytes, starts: list[int], lengths: list[int]) -> int:
    """How many of the records at starts pass their CRCs, from the first one on."""
    if not starts:
        return 0
    buf = np.frombuffer(data, np.uint8)
    at, sizes = np.array(starts, np.int64), np.array(lengths, np.int64)
    length_crc, crc = np.zeros(len(at), np.uint32), np.zeros(len(at), np.uint32)
    order = np.argsort(sizes, kind="stable")
    for members in np.split(order, np.flatnonzero(np.diff(sizes[order])) + 1):  # the records of one size
        size = lengths[members[0]]
        length_crc[members] = _py_masked_crc32c(struct.pack("<Q", size))
        if len(members) >= 32:  # a byte column at a time for all of them: faster from ~25 records on (measured)
            crc[members] = masked_crc32c(buf, at[members] + 12, size)
        else:
            for i in members.tolist():
                crc[i] = _py_masked_crc32c(data[starts[i] + 12:starts[i] + 12 + size])
    bad = (length_crc != _uint32_at(buf, at + 8)) | (crc != _uint32_at(buf, at + 12 + sizes))
    return int(np.argmax(bad)) if bad.any() else len(starts)


def _crc32c_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)  # Castagnoli, reflected
    return table


_CRC32C = _crc32c_table()


def masked_crc32c(buf: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """TFRecord's masked CRC-32C of buf[s:s + length] for every s, all at once: one byte column at a time."""
    crc = np.full(len(starts), 0xFFFFFFFF, np.uint32)
    for j in range(length):
        crc = _CRC32C[(crc ^ buf[starts + j]) & 0xFF] ^ (crc >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)


def _py_masked_crc32c(data: bytes) -> int:
    """TensorBoard's own masked CRC-32C (pure Python, 3 MB/s): for records of a length too rare to batch."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_masked_crc32c

    return tensorboard_masked_crc32c(data)


def _uint32_at(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    b = [buf[at + k].astype(np.uint32) for k in range(4)]
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
