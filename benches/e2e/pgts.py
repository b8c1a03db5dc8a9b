"""Parse the commit timestamp wal2json prints with include-timestamp=1 (shared by the latency helpers)."""
import calendar, re

_TS = re.compile(rb'"timestamp":"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::(\d\d))?"')


def commit_us(payload: bytes):
    """Microseconds since the Unix epoch of the payload's "timestamp", or None."""
    m = _TS.search(payload)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.group(1, 2, 3, 4, 5, 6))
    frac = m.group(7) or b"0"
    us = int(frac.ljust(6, b"0"))
    off = (int(m.group(9)) * 3600 + int(m.group(10) or 0) * 60) * (1 if m.group(8) == b"+" else -1)
    return (calendar.timegm((y, mo, d, h, mi, s)) - off) * 1_000_000 + us
