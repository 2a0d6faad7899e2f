"""Coupon codes: a percentage off."""
from money import percent

COUPONS = {"SPRING10": 10, "STAFF25": 25}


class UnknownCoupon(Exception):
    def __init__(self, code):
        super().__init__(f"unknown coupon {code!r}")
        self.code = code


def coupon_discount(code, amount):
    pct = COUPONS.get(code)
    if pct is None:
        raise UnknownCoupon(code)
    return percent(amount, pct)
