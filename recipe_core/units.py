"""Small arithmetic on sizes and counts, shared by the packages."""


def ceil_div(a: int, b: int) -> int:
    """a / b rounded up, in integers (batches per epoch, blocks per curve)."""
    return -(-a // b)


def human_bytes(n: int) -> str:
    """A byte count as people read it in an error: "2.5 GB", "300 bytes"."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"  # never "1e+03 MB"
    return f"{n} bytes"


def count(n: int, one: str, many: str | None = None) -> str:
    """"1 run", "2 runs": a number with its noun in the right form (many defaults to one + "s")."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"
