"""Price a basket: a Python jobicolet packaged as a zip (examples/python/pricing.zip).

In:  {"items": [{"sku": "pen", "qty": 12, "unit_cents": 150}], "coupon": "SPRING10"}
Out: {"lines": [{"sku": "pen", "qty": 12, "total": "18.00"}], "subtotal": "18.00",
      "discounts": [{"rule": "volume", "amount": "0.90"}, {"rule": "SPRING10", "amount": "1.71"}],
      "total": "15.39"}

The zip's root holds this main.py (the event function) beside the modules it imports:
money.py (a helper module) and rules/ (a package: rules/__init__.py, rules/volume.py,
rules/coupons.py). An unknown coupon is a failure (code 2); a bad amount raises inside
money.py, and the traceback names that file and line. Rebuild the zip with
`make examples-python` (examples/python/build_zip.py).
"""
import jobico

import money
import rules


def event(order):
    lines = [{"sku": item["sku"], "qty": item["qty"], "cents": item["qty"] * money.cents(item["unit_cents"])}
             for item in order["items"]]
    subtotal = sum(line["cents"] for line in lines)
    try:
        discounts = rules.discounts(lines, subtotal, order.get("coupon"))
    except rules.UnknownCoupon as exc:
        jobico.warn("unknown coupon", exc.code)
        return 2, {"error": f"unknown coupon {exc.code!r}"}
    total = subtotal - sum(amount for _, amount in discounts)
    jobico.info("priced", len(lines), "lines:", money.fmt(total))
    return 0, {
        "lines": [{"sku": line["sku"], "qty": line["qty"], "total": money.fmt(line["cents"])} for line in lines],
        "subtotal": money.fmt(subtotal),
        "discounts": [{"rule": rule, "amount": money.fmt(amount)} for rule, amount in discounts],
        "total": money.fmt(total),
    }
