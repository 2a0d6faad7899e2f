"""5% off the lines of 10 or more of one item."""
from money import percent

THRESHOLD = 10
PERCENT = 5


def volume_discount(lines):
    return sum(percent(line["cents"], PERCENT) for line in lines if line["qty"] >= THRESHOLD)
