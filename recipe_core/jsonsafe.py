"""One converter to JSON-safe values, for what the store saves and what the CLI prints."""
from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal


def plain(value):
    """JSON-safe: NaN/inf become null, dates become ISO strings, numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value
