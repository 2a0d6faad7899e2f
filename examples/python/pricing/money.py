"""Money as integer cents (no float rounding, and no `decimal` import to pay per event)."""


def cents(value):
    """A non-negative whole number of cents, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"an amount must be a whole number of cents >= 0, not {value!r}")
    return value


def percent(amount, pct):
    """``pct`` percent of ``amount`` cents, rounded half up."""
    return (amount * pct + 50) // 100


def fmt(amount):
    return f"{amount // 100}.{amount % 100:02d}"
