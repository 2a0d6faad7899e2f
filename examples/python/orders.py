"""Order totals: a JSON transform.

In:  {"id": "A-1", "currency": "EUR", "items": [{"sku": "pen", "qty": 3, "price": 1.5}, ...]}
Out: {"id": "A-1", "currency": "EUR", "lines": [{"sku": "pen", "total": 4.5}], "total": 4.5, "count": 3}

An order without items is a failure (code 1) with a message; the schema (orders.json)
has already checked the shape, so the code can rely on it.
"""
from decimal import ROUND_HALF_EVEN, Decimal

import jobico

CENT = Decimal("0.01")


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_EVEN)


def event(order):
    items = order["items"]
    if not items:
        jobico.warn("order", order["id"], "has no items")
        return 1, {"id": order["id"], "error": "the order has no items"}
    lines = [{"sku": item["sku"], "total": float(money(item["qty"] * money(item["price"])))}
             for item in items]
    total = sum(money(line["total"]) for line in lines)
    jobico.debug("order", order["id"], "has", len(lines), "lines")
    return 0, {
        "id": order["id"],
        "currency": order.get("currency", "EUR"),
        "lines": lines,
        "total": float(total),
        "count": sum(item["qty"] for item in items),
    }
