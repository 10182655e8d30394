"""Times as people type them: `24h`, `7d`, `30m` (ago), epoch seconds, or ISO 8601."""

from __future__ import annotations

import datetime as dt
import re
import time

from ossgate.errors import InvalidRequest

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_time_ms(value: str | float | None, *, param: str = "since", now: float | None = None) -> int | None:
    """Epoch milliseconds for `value`; `7d` means seven days before now. None stays None."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    if isinstance(value, int | float):
        return int(value * 1000)
    text = value.strip()
    if m := _RELATIVE.match(text):
        return int((now - float(m.group(1)) * _UNIT_S[m.group(2)]) * 1000)
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidRequest(f"{param}={value!r} is not a time: use 24h / 7d (ago), epoch seconds or ISO 8601",
                             param=param) from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def auto_bucket_ms(since_ms: int, until_ms: int, target_points: int = 60) -> int:
    """A round bucket width giving about `target_points` points over the range."""
    span = max(1000, until_ms - since_ms)
    for width_s in (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400, 7 * 86_400):
        if span / (width_s * 1000) <= target_points:
            return width_s * 1000
    return 30 * 86_400_000
