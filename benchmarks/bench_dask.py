"""FixedConvTransformer on Dask: cluster throughput against one NumPy call, and an out-of-core transform.

    python benchmarks/bench_dask.py --data-home ../shared/data     # MNIST (70,000 images) from there

1. Throughput of transforming all of MNIST (train + test, 70,000 28x28 images;
   a Gabor bank of 16 5x5 kernels pooled on a 4x4 grid: 256 features) as one
   NumPy call in this process, and as a Dask array on a 1-worker and a 2-worker
   ``LocalCluster`` (processes, one thread each), as ratios to the NumPy call.
   Cluster times are end to end from the client (input shipped with the graph,
   features gathered back), and, separately, with the input already on the workers.
2. An out-of-core transform: a zarr array on disk larger than a memory limit
   set on the process (``RLIMIT_DATA``), transformed block by block into a
   zarr array on disk, in a child process whose peak resident memory is
   printed; the same child then shows that reading the input whole under that
   limit fails.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import numpy as np

from skconvfeat import FixedConvTransformer
from skconvfeat.datasets import fetch_mnist

LAYER = dict(bank="gabor", kernel_size=5, pool_grid=4)  # 16 maps x 4x4 = 256 features
CHUNK = 5000  # images per Dask block: ~4 MB of uint8 in, 5 MB of features out


def best_time(func, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def load_mnist(data_home):
    parts = [fetch_mnist(data_home=data_home, subset=s, download_if_missing=False) for s in ("train", "test")]
    return np.concatenate([p.images for p in parts])


def throughput(images, repeats):
    import dask.array as da
    from distributed import Client, LocalCluster

    conv = FixedConvTransformer(**LAYER).fit(images[:1])
    expected = conv.transform(images)
    # "End to end" ships the 55 MB of images inside the graph, as from_array on a client does; Dask warns.
    warnings.filterwarnings("ignore", message="Sending large graph")
    rows = [("one NumPy call (this process, all cores)", best_time(lambda: conv.transform(images), repeats), None)]
    for n_workers in (1, 2):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            lazy = conv.transform(da.from_array(images, chunks=(CHUNK, 28, 28)))
            assert np.array_equal(lazy.compute(), expected)  # also warms the workers up
            end_to_end = best_time(lambda: lazy.compute(), repeats)
            on_workers = da.from_array(images, chunks=(CHUNK, 28, 28)).persist()
            resident = conv.transform(on_workers)
            in_place = best_time(lambda: resident.compute(), repeats)
            rows.append((f"{n_workers}-worker LocalCluster, end to end", end_to_end, n_workers))
            rows.append((f"{n_workers}-worker LocalCluster, input on the workers", in_place, n_workers))
    base = rows[0][1]
    print(f"\n{len(images)} images {images.shape[1:]}, {conv.n_features_out_} features, blocks of {CHUNK}")
    print(f"{'':<48}{'s':>8}{'img/s':>10}{'vs NumPy':>10}")
    for label, seconds, _ in rows:
        print(f"{label:<48}{seconds:>8.2f}{len(images) / seconds:>10.0f}{base / seconds:>9.2f}x")


OUT_OF_CORE_CHILD = textwrap.dedent("""
    import resource, sys, time
    import numpy as np, dask.array as da, zarr
    from skconvfeat import FixedConvTransformer

    source, target, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    X = zarr.open_array(source, mode="r")
    conv = FixedConvTransformer(bank="gabor", kernel_size=5, pool_grid=2)
    lazy = da.from_zarr(source)
    start = time.perf_counter()
    features = conv.fit(lazy).transform(lazy)
    features.to_zarr(target, overwrite=True)
    seconds = time.perf_counter() - start
    out = zarr.open_array(target, mode="r")
    check = conv.transform(np.asarray(X[:1000]))
    assert np.array_equal(np.asarray(out[:1000]), check)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"transform: {X.shape[0]} images in {seconds:.1f} s ({X.shape[0] / seconds:.0f} img/s), "
          f"features {out.shape} written to zarr; peak resident memory {peak / 2**20:.0f} MiB")
    try:  # after the peak was read: the attempt itself may fill memory up to the limit
        X[:]
        print("reading the input whole under the limit: succeeded (the limit is too high to prove anything)")
    except MemoryError:
        print("reading the input whole under the same limit: MemoryError, as it should")
    print("PEAK", peak)
""")


def out_of_core(images, n_images, limit_mib, workdir):
    import dask.array as da

    source, target = os.path.join(workdir, "images.zarr"), os.path.join(workdir, "features.zarr")
    reps = -(-n_images // len(images))
    tiled = da.concatenate([da.from_array(images, chunks=(20000, 28, 28))] * reps)[:n_images]
    start = time.perf_counter()
    tiled.rechunk((20000, 28, 28)).to_zarr(source, overwrite=True)
    print(f"\nwrote {n_images} uint8 images ({n_images * 784 / 2**20:.0f} MiB, "
          f"{n_images * 784 * 4 / 2**20:.0f} MiB as float32) to zarr in {time.perf_counter() - start:.0f} s; "
          f"memory limit (RLIMIT_DATA) {limit_mib} MiB")
    done = subprocess.run([sys.executable, "-c", OUT_OF_CORE_CHILD, source, target, str(limit_mib << 20)],
                          capture_output=True, text=True)
    print(done.stdout.strip().replace("\nPEAK", "\n(peak bytes)"))
    if done.returncode:
        print(done.stderr[-3000:])
        raise SystemExit("the out-of-core transform failed")
    peak, limit, size = int(done.stdout.split("PEAK")[-1]), limit_mib << 20, n_images * 784
    if size <= limit:
        print(f"the input ({size / 2**20:.0f} MiB) fits under the limit: this run proves nothing about out-of-core work")
    else:
        relation, verdict = ("<", "bounded") if peak < limit else (">=", "NOT bounded")
        print(f"peak {peak / 2**20:.0f} MiB {relation} limit {limit_mib} MiB < input {size / 2**20:.0f} MiB: {verdict}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="where mnist/ lies (default: skconvfeat's data home)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-of-core-images", type=int, default=2_000_000)
    parser.add_argument("--memory-limit-mib", type=int, default=1024)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    import dask
    import distributed

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, Dask {dask.__version__}, distributed {distributed.__version__}; "
          f"{time.strftime('%Y-%m-%d')}")
    images = load_mnist(args.data_home)
    if not args.skip_throughput:
        throughput(images, args.repeats)
    with tempfile.TemporaryDirectory(prefix="bench_dask") as workdir:
        out_of_core(images, args.out_of_core_images, args.memory_limit_mib, workdir)


if __name__ == "__main__":
    main()
