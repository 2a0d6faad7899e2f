"""The discount rules, applied in order: volume first, then a coupon on what remains."""
from .coupons import UnknownCoupon, coupon_discount
from .volume import volume_discount

__all__ = ["UnknownCoupon", "discounts"]


def discounts(lines, subtotal, coupon=None):
    """[(rule name, cents)] for this basket."""
    found = []
    volume = volume_discount(lines)
    if volume:
        found.append(("volume", volume))
    if coupon:
        found.append((coupon, coupon_discount(coupon, subtotal - volume)))
    return found
