"""How a query and its result cross the pipe to the query worker: frames of a JSON header and a binary payload;
results as Arrow IPC, never pickle; bound parameters as JSON, tagged when JSON has no such type."""
from __future__ import annotations

import json
import struct
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal

import pyarrow as pa

from recipe_core.errors import QueryFailed


def write_frame(out, header: dict, payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    out.write(struct.pack(">IQ", len(head), len(payload)) + head + payload)
    out.flush()


def read_frame(stream) -> tuple[dict, bytes] | None:
    prefix = stream.read(12)
    if len(prefix) < 12:
        return None  # the other end is gone
    n_head, n_payload = struct.unpack(">IQ", prefix)
    head = stream.read(n_head)
    payload = stream.read(n_payload) if n_payload else b""
    if len(head) < n_head or len(payload) < n_payload:
        return None
    return json.loads(head), payload


def to_ipc(data: pa.Table | pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return sink.getvalue().to_pybytes()


def from_ipc(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(payload).read_all()


def encode_params(params) -> list:
    """Bound parameters as JSON; the types the app binds besides JSON's own (dates, decimals...) carry a tag."""
    return [_encode(p) for p in params]


def _encode(p):
    if p is None or isinstance(p, (bool, int, float, str)):
        return p
    if isinstance(p, (list, tuple)):
        return [_encode(v) for v in p]
    if isinstance(p, dict):
        return {"t": "dict", "v": {str(k): _encode(v) for k, v in p.items()}}
    if isinstance(p, datetime):
        return {"t": "datetime", "v": p.isoformat()}
    if isinstance(p, date):
        return {"t": "date", "v": p.isoformat()}
    if isinstance(p, dtime):
        return {"t": "time", "v": p.isoformat()}
    if isinstance(p, timedelta):
        return {"t": "timedelta", "v": p.total_seconds()}
    if isinstance(p, Decimal):
        return {"t": "decimal", "v": str(p)}
    if isinstance(p, (bytes, bytearray)):
        return {"t": "bytes", "v": bytes(p).hex()}
    if hasattr(p, "item"):  # numpy scalars
        return p.item()
    raise QueryFailed(f"a query parameter of type {type(p).__name__} cannot be sent to the query worker")


_DECODE = {"datetime": datetime.fromisoformat, "date": date.fromisoformat, "time": dtime.fromisoformat,
           "timedelta": lambda v: timedelta(seconds=v), "decimal": Decimal, "bytes": bytes.fromhex,
           "dict": lambda v: {k: _decode(x) for k, x in v.items()}}


def decode_params(params: list) -> list:
    return [_decode(p) for p in params]


def _decode(p):
    if isinstance(p, list):
        return [_decode(v) for v in p]
    if isinstance(p, dict):
        return _DECODE[p["t"]](p["v"])
    return p
