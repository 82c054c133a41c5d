"""Where a number was computed: the packages and the machine, kept beside every result.

The same command gives the same number only in the same environment: k-means kernels, for one, follow
the order of floating-point sums, which the BLAS build, the CPU it picks kernels for and the library
versions decide, and a small change there can move a fitted model by several held-out images. So each
model's record carries :func:`environment`, and a curves report says which environments its models
came from (``environment_counts``).
"""

import os
import platform
from functools import cache
from importlib import metadata

__all__ = ["environment", "environment_counts", "environment_text"]

# Distributions whose versions decide the numbers (the optional ones when installed), in report order.
_DISTRIBUTIONS = ("skconvfeat", "numpy", "scipy", "scikit-learn", "torch", "numba")


def environment():
    """``{name: version}`` of Python and the packages, with ``blas`` and ``cpu``; a new dict on every call."""
    return dict(_environment())


@cache
def _environment():
    found = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found["blas"] = _blas()
    found["cpu"] = _cpu()
    return found


def _blas():
    """The BLAS libraries loaded, as ``"openblas 0.3.30 (Haswell)"``; reading them loads nothing new."""
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401 - loads NumPy's BLAS, so that it is the one reported

    found = {f"{i['internal_api']} {i['version']} ({i.get('architecture') or '?'})"
             for i in threadpool_info() if i["user_api"] == "blas"}
    return ", ".join(sorted(found)) or "unknown"


def _cpu():
    """The CPU's model name and the cores the process may use."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def environment_counts(records):
    """``[{"environment": dict or None, "models": n}]`` over ``records``, most models first (None: not recorded)."""
    counts = {}
    for record in records:
        env = record.get("environment")
        key = None if not isinstance(env, dict) else tuple(sorted((str(k), str(v)) for k, v in env.items()))
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (item[0] is None, -item[1]))
    return [{"environment": None if key is None else dict(key), "models": n} for key, n in ordered]


def environment_text(counts):
    """One sentence naming each environment and how many models it computed."""
    parts = []
    for entry in counts:
        env, n = entry["environment"], entry["models"]
        models = f"{n:,} model{'s' if n != 1 else ''}"
        if env is None:
            parts.append(f"not recorded for {models} (cached before environments were recorded)")
            continue
        packages = ", ".join(f"{name} {env[name]}" for name in ("python", *_DISTRIBUTIONS) if name in env)
        parts.append(f"{packages}; BLAS {env.get('blas', 'unknown')}; CPU {env.get('cpu', 'unknown')} "
                     f"({models})")
    return "Computed with " + "; and ".join(parts) + "." if parts else ""
