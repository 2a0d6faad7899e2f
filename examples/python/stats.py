"""Summary statistics of a series, with the standard library's `statistics` module.

In:  {"name": "latency", "values": [12.5, 9.1, 30.2, 11.0]}
Out: {"name": "latency", "n": 4, "mean": 15.7, "median": 11.75, "stdev": 9.77, "max": 30.2, "outliers": []}

Outliers are the values above the upper fence, Q3 + 1.5 x the interquartile range. Importing
`statistics` (with `fractions`, `decimal` and `random` behind it) happens on every event,
since every event gets a fresh interpreter: see docs/python.md for what imports cost.
"""
import statistics

import jobico


def event(data):
    values = [float(v) for v in data["values"]]
    if len(values) < 2:
        return 2, f"need at least two values, got {len(values)}"
    q1, _, q3 = statistics.quantiles(values, n=4)
    fence = q3 + 1.5 * (q3 - q1)
    outliers = [v for v in values if v > fence]
    if outliers:
        jobico.warn(f"{data.get('name', 'series')}: {len(outliers)} outlier(s) above {fence:.2f}")
    return 0, {
        "name": data.get("name", "series"),
        "n": len(values),
        "mean": round(statistics.fmean(values), 2),
        "median": round(statistics.median(values), 2),
        "stdev": round(statistics.stdev(values), 2),
        "max": max(values),
        "outliers": outliers,
    }
