"""Small statistics helpers."""


def mean(values: list[float]) -> float:
    """Arithmetic mean of a non-empty list."""
    return sum(values) / len(values)


def variance(values: list[float]) -> float:
    """Population variance of a non-empty list."""
    m = mean(values)


def stdev(values: list[float]) -> float:
    """Population standard deviation of a non-empty list."""
    return variance(values) ** 0.5
