"""At which order does this machine's threaded LAPACK Cholesky crash? Calibrates GramRidgeClassifier.

    python benchmarks/check_blas_cholesky.py [--orders 12000,15500,15800,28800] [--threads 1,2]

GramRidgeClassifier factorises its n_features-square Gram matrix with scipy's LAPACK dpotrf, and
factorises it on one BLAS thread above skconvfeat._heads._PARALLEL_CHOLESKY_MAX (12,000): on the 2-core
SkylakeX machine of docs/results.md, OpenBLAS's threaded dpotrf killed the process (segmentation fault)
from order 15,800 on 2-4 threads (OpenMathLib/OpenBLAS#2562). This script runs the same call, without
skconvfeat, on a random positive definite matrix of each order and thread count, each in a fresh
process (a crash takes only that process, and OPENBLAS_NUM_THREADS is read when the library loads),
and prints a table: seconds, or the signal that ended the process. Memory: 8 * order**2 bytes
(6.6 GB at 28,800).
"""

import argparse
import os
import platform
import subprocess
import sys

# The child: the Gram matrix's layout and call as in skconvfeat._heads (the transposed view, overwritten).
CHILD = """
import sys, time
import numpy as np, scipy.linalg.lapack
n = int(sys.argv[1])
a = np.random.default_rng(0).random((n, n))  # only the lower triangle is read; a large diagonal makes it definite
np.fill_diagonal(a, n)
start = time.perf_counter()
_, info = scipy.linalg.lapack.dpotrf(a.T, lower=0, clean=0, overwrite_a=1)
print(f"{time.perf_counter() - start:.1f} s" if info == 0 else f"info={info}")
"""


def run_one(order, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", CHILD, str(order)], env=env, capture_output=True, text=True)
    if done.returncode < 0:
        return f"killed by signal {-done.returncode}"
    return done.stdout.strip() if done.returncode == 0 else f"exit {done.returncode}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", default="12000,15500,15800,28800", help="matrix orders, comma-separated")
    parser.add_argument("--threads", default="1,2", help="BLAS thread counts, comma-separated")
    args = parser.parse_args()
    orders = [int(v) for v in args.orders.split(",")]
    thread_counts = [int(v) for v in args.threads.split(",")]
    print(f"# {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print("| order | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in thread_counts) + " |")
    print("|---:|" + "---|" * len(thread_counts))
    for order in orders:
        print(f"| {order:,} | " + " | ".join(run_one(order, t) for t in thread_counts) + " |", flush=True)


if __name__ == "__main__":
    main()
