"""Throughput of FixedConvTransformer against the PyTorch code a user would write, side by side.

    python benchmarks/bench_transform.py            # CPU: ours vs torch conv2d+relu+pool on the CPU
    python benchmarks/bench_transform.py --gpu      # GPU rows instead (needs CuPy and CUDA)
    python benchmarks/bench_transform.py --net      # CPU: a two-layer FixedConvNet vs the same torch network
                                                    # (on the CPU, torch at its best of 64, 256 and 1,024 images a call)
    python benchmarks/bench_transform.py --dictionary [--total | --breakdown]
        # CIFAR-10-sized data-derived bank: ours vs torch vs the bare matmul (and all 60,000 images),
        # or where the layer's time goes per position

Same work on both sides: float32, a bank of 32 random 5x5 kernels, 'valid'
padding, ReLU, 2x2 average pooling, features flattened to a NumPy array.
With ``--net``: 32 random 5x5 kernels, 'same' padding, ReLU, 2x2 max-pooling,
then 64 random 3x3 kernels over those 32 maps, 'same', ReLU, 2x2 max-pooling
(the learned CIFAR-10 baseline's network).
Each number is the best of at least `--repeats` runs, and of at least one
second of runs for short work (best-of rejects noise from other processes on
a shared machine; the ratio is what we report).
"""

import argparse
import platform
import time

import numpy as np

from skconvfeat import FixedConvNet, FixedConvTransformer

# name: (n_images, height, width, channels) -- shapes of the real datasets.
WORKLOADS = {
    "digits": (1797, 8, 8, 1),
    "mnist": (10000, 28, 28, 1),
    "cifar10": (10000, 32, 32, 3),
}
N_FILTERS = 32  # a typical first-layer width
KERNEL = 5  # pixels
TORCH_BATCH = 1024  # images per torch call on the GPU; whole-set calls were no faster
# On the CPU torch gets its best of these (one layer and the network): 1,024 is its slowest there; at one
# thread on MNIST the network ran 10,086 / 6,867 / 4,025 img/s at 64 / 256 / 1,024 images a call (small
# batches keep the maps in cache).
CPU_TORCH_BATCHES = (64, 256, 1024)


def best_time(func, repeats, min_seconds=1.0):
    """Best of at least `repeats` runs, more for short work (until `min_seconds` of runs)."""
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def make_images(shape, seed=0):
    n, h, w, c = shape
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def ours(images, device):
    conv = FixedConvTransformer(
        bank="random", bank_params={"n_filters": N_FILTERS}, kernel_size=KERNEL, pool_size=2, device=device, random_state=0
    ).fit(images[:1])
    return conv, lambda: conv.transform(images)


def torch_layer(images, filters, device, batch=TORCH_BATCH):
    """What a user writes: numpy -> torch (-> .cuda()) -> conv2d -> relu -> avg_pool2d -> numpy."""
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(filters.astype(np.float32)).to(device)

    def run():
        out = []
        with torch.no_grad():
            for b in range(0, len(images), batch):
                x = torch.from_numpy(images[b : b + batch]).to(device).permute(0, 3, 1, 2).float()
                y = F.avg_pool2d(F.relu(F.conv2d(x, weight)), 2)
                out.append(y.flatten(1).cpu().numpy())
        return np.concatenate(out)

    return run


def ours_net(images):
    layer = dict(padding="same", pooling="max", pool_size=2)
    net = FixedConvNet([
        ("conv1", FixedConvTransformer("random", bank_params={"n_filters": 32}, kernel_size=5, random_state=0, **layer)),
        ("conv2", FixedConvTransformer("random", bank_params={"n_filters": 64}, kernel_size=3, random_state=1, **layer)),
    ]).fit(images[:1])
    return net, lambda: net.transform(images)


def torch_net(images, filters, batch):
    """The same two layers as a user writes them in torch, NumPy in and out, ``batch`` images a call."""
    import torch
    import torch.nn.functional as F

    weights = [torch.from_numpy(f.astype(np.float32)) for f in filters]

    def run():
        out = []
        with torch.no_grad():
            for b in range(0, len(images), batch):
                x = torch.from_numpy(images[b : b + batch]).permute(0, 3, 1, 2).float()
                for w in weights:
                    # padding="same" on odd kernels: (k - 1) // 2 on each side.
                    x = F.max_pool2d(F.relu(F.conv2d(x, w, padding=w.shape[-1] // 2)), 2)
                out.append(x.flatten(1).numpy())
        return np.concatenate(out)

    return run


def cpu_rows(names, repeats, net=False):
    print(f"{'workload':10} {'images':>7} {'ours img/s':>12} {'torch img/s':>12} {'ours/torch':>10}  max|diff|")
    for name in names:
        images = make_images(WORKLOADS[name])
        if net:
            conv, run_ours = ours_net(images)
            filters = [layer.filters_ for _, layer in conv.layers_]
            runs_torch = [torch_net(images, filters, batch) for batch in CPU_TORCH_BATCHES]
        else:
            conv, run_ours = ours(images, "cpu")
            runs_torch = [torch_layer(images, conv.filters_, "cpu", batch) for batch in CPU_TORCH_BATCHES]
        diff = np.abs(run_ours() - runs_torch[0]()).max()
        t_ours = best_time(run_ours, repeats)
        t_torch = min(best_time(run, repeats) for run in runs_torch)  # torch at its best batch size
        n = len(images)
        print(f"{name:10} {n:7d} {n / t_ours:12.0f} {n / t_torch:12.0f} {t_torch / t_ours:9.2f}x  {diff:.1e}")


def gpu_rows(names, repeats):
    """Our time as multiples: of cuDNN (device-resident data) and of the bare-copy floor (NumPy in/out)."""
    import cupy as cp
    import torch
    import torch.nn.functional as F

    def synced(func):
        return lambda: (func(), cp.cuda.Device().synchronize())

    print(f"{'workload':10} {'resident ours/cudnn':>20} {'numpy ours/floor':>17} {'torch/floor':>12} {'cpu/gpu':>8}")
    for name in names:
        images = make_images((60000, *WORKLOADS[name][1:]))  # 60,000 images: a whole training set
        n = len(images)
        conv, run_ours = ours(images, "cuda")
        device_images = cp.asarray(images)
        weight = torch.from_numpy(conv.filters_.astype(np.float32)).cuda()
        torch_images = torch.as_tensor(device_images, device="cuda")
        n_out = n * conv.n_features_out_
        host_out = np.frombuffer(cp.cuda.alloc_pinned_memory(n_out * 4), np.float32, n_out)

        def floor():  # input host->device in its own dtype, pooled output device->host
            cp.asarray(images)
            cp.empty(n_out, np.float32).get(out=host_out)

        def cudnn_resident():
            with torch.no_grad():
                for b in range(0, n, TORCH_BATCH * 8):
                    x = torch_images[b : b + TORCH_BATCH * 8].permute(0, 3, 1, 2).float()
                    F.avg_pool2d(F.relu(F.conv2d(x, weight)), 2).flatten(1)
            torch.cuda.synchronize()

        t_resident = best_time(synced(lambda: conv.transform(device_images)), repeats)
        t_cudnn = best_time(cudnn_resident, repeats)
        t_numpy = best_time(run_ours, repeats)
        t_floor = best_time(synced(floor), repeats)
        t_torch = best_time(torch_layer(images, conv.filters_, "cuda"), repeats)
        # CPU on a 5,000-image slice, scaled: the full set would take minutes.
        t_cpu = best_time(lambda: conv.set_params(device="cpu").transform(images[:5000]), 1) * n / 5000
        conv.set_params(device="cuda")
        print(f"{name:10} {t_resident / t_cudnn:19.2f}x {t_numpy / t_floor:16.2f}x {t_torch / t_floor:11.2f}x {t_cpu / t_numpy:7.0f}x")


# The CIFAR-10-sized dictionary case (issue 9): 1,600 k-means filters of 6x6x3
# on normalised, whitened patches, stride 1, quadrant pooling.
DICT_FILTERS = 1600
DICT_KERNEL = 6
DICT_ENCODINGS = ("soft_threshold", "two_sided_soft_threshold", "triangle", "two_sided_nearest")
CIFAR_TRAIN = 60000
# Images per torch call in the dictionary case: a 729 x 1,600 map is 4.7 MB an image, and the
# encodings hold several such maps at once, so batches of 256 peaked at 6.4 GB (32 or 8 were as fast).
DICT_TORCH_BATCH = 32
TOTAL_CHUNK = 10000  # images per transform call of --total: 512 MB of features


def dictionary_layer(images, nonlinearity="two_sided_soft_threshold"):
    """Our layer with a k-means bank (2 k-means passes: the bank's quality does not change the work).

    Fitted per encoding: the fitted layer keeps the nonlinearity it was fitted with (set_params does not change it).
    """
    return FixedConvTransformer(
        bank="kmeans",
        nonlinearity=nonlinearity,
        bank_params={"n_filters": DICT_FILTERS, "max_iter": 2},
        kernel_size=DICT_KERNEL,
        pool_grid=2,
        n_patches=20000,
        device="cpu",
        random_state=0,
    ).fit(images[:2000])


def torch_dictionary(images, conv):
    """The same function in torch, as a user would write it: per-position patch mean and variance by
    average pooling, whitening folded into the conv2d kernels, then the encoding and adaptive pooling."""
    import torch
    import torch.nn.functional as F

    prep, n = conv.preprocessing_, DICT_FILTERS
    kernels = conv.filters_.reshape(n, -1)
    folded = kernels @ prep.whitening  # W d: whitening folded into the kernels
    shift = prep.whitening @ prep.mean
    size = kernels.shape[1]

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    weight = tensor(folded.reshape(conv.filters_.shape))
    w_sum, offset = tensor(folded.sum(axis=1))[:, None, None], tensor(kernels @ shift)[:, None, None]
    z_weight = tensor(prep.whitening.reshape(size, *conv.filters_.shape[1:]))
    z_sum, z_shift = tensor(prep.whitening.sum(axis=1))[:, None, None], tensor(shift)[:, None, None]
    norms2 = tensor(np.sum(kernels**2, axis=1))[:, None, None]
    alpha = conv.alpha

    def layer(x):
        mean = F.avg_pool2d(x.mean(1, keepdim=True), DICT_KERNEL, stride=1)
        sq = F.avg_pool2d((x * x).mean(1, keepdim=True), DICT_KERNEL, stride=1)
        scale = torch.sqrt((sq - mean * mean).clamp_min(0) + prep.eps_norm)
        r = (F.conv2d(x, weight) - mean * w_sum) / scale - offset
        if conv.nonlinearity == "soft_threshold":
            f = F.relu(r - alpha)
        elif conv.nonlinearity == "two_sided_soft_threshold":
            f = torch.cat([F.relu(r - alpha), F.relu(-r - alpha)], 1)
        elif conv.nonlinearity == "two_sided_nearest":
            # Thiry et al.'s code: 1 below the (k+1)-th smallest |z - d|^2 / 2 - |z|^2 / 2, for z and for -z.
            k = max(1, int(conv.nearest_fraction * n))
            sides = [norms2 / 2 - r, norms2 / 2 + r]
            f = torch.cat([(s < s.kthvalue(k + 1, dim=1, keepdim=True).values).float() for s in sides], 1)
        else:  # triangle
            z = (F.conv2d(x, z_weight) - mean * z_sum) / scale - z_shift
            dist = torch.sqrt(F.relu((z * z).sum(1, keepdim=True) - 2 * r + norms2))
            f = F.relu(dist.mean(1, keepdim=True) - dist)
        return F.adaptive_avg_pool2d(f, 2).flatten(1)

    def run():
        out = []
        with torch.no_grad():
            for b in range(0, len(images), DICT_TORCH_BATCH):
                x = torch.from_numpy(images[b : b + DICT_TORCH_BATCH]).permute(0, 3, 1, 2).float()
                out.append(layer(x).numpy())
        return np.concatenate(out)

    return run


def numpy_passes(run):
    """``run`` with the CPU layer's NumPy passes, as on a machine without numba."""
    from skconvfeat._backend import cpu

    def without_numba():
        compiled, cpu.compiled_kernels = cpu.compiled_kernels, lambda: None
        try:
            return run()
        finally:
            cpu.compiled_kernels = compiled

    return without_numba


def dictionary_rows(n_images, repeats, total):
    """Ours (compiled and NumPy passes), torch and the bare GEMM timed in interleaved rounds (best of each),
    so load drifts hit all four."""
    from skconvfeat._backend import cpu

    images = make_images((n_images, 32, 32, 3))
    patch = DICT_KERNEL * DICT_KERNEL * 3
    positions = (32 - DICT_KERNEL + 1) ** 2
    flops_per_image = 2 * positions * patch * DICT_FILTERS  # the convolution's GEMM alone
    rng = np.random.default_rng(0)
    a = rng.standard_normal((positions * 16, patch), dtype=np.float32)
    b = rng.standard_normal((patch, DICT_FILTERS), dtype=np.float32)
    c = np.empty((a.shape[0], DICT_FILTERS), dtype=np.float32)
    print(f"# {n_images} images 32x32x3, {DICT_FILTERS} k-means filters {DICT_KERNEL}x{DICT_KERNEL}x3, whitened, "
          f"stride 1, quadrant pooling; bare GEMM ({positions}*16 x {patch}) @ ({patch} x {DICT_FILTERS})")
    print(f"# ours: {'numba-compiled passes' if cpu.compiled_kernels() else 'NumPy passes (numba is not installed)'}; "
          "'NumPy passes': ours without numba")
    print(f"{'encoding':26} {'ours img/s':>10} {'NumPy passes':>12} {'torch img/s':>11} {'ours/torch':>10} "
          f"{'bare GEMM img/s':>15} {'ours/GEMM':>9} {'per round':>9}  rel.diff")
    for encoding in DICT_ENCODINGS:
        conv = dictionary_layer(images, encoding)
        run_ours, run_torch = (lambda: conv.transform(images)), torch_dictionary(images, conv)
        ours, theirs = run_ours(), run_torch()
        diff = np.abs(ours - theirs).max() / np.abs(theirs).max()
        # The bare GEMM runs on as many positions as the images have, so each round times the same work.
        gemm_calls = -(-n_images // 16)
        times = {"ours": [], "numpy": [], "torch": [], "gemm": []}
        for _ in range(repeats):
            times["ours"].append(best_time(run_ours, 1, 0) / n_images)
            times["numpy"].append(best_time(numpy_passes(run_ours), 1, 0) / n_images)
            times["torch"].append(best_time(run_torch, 1, 0) / n_images)
            times["gemm"].append(best_time(lambda: [np.matmul(a, b, out=c) for _ in range(gemm_calls)], 1, 0) / (16 * gemm_calls))
        t_ours, t_numpy, t_torch, t_gemm = (min(times[k]) for k in ("ours", "numpy", "torch", "gemm"))
        # The ratio of each round's own pair, lowest to highest: how far one round can be trusted.
        paired = sorted(g / o for g, o in zip(times["gemm"], times["ours"]))
        print(f"{encoding:26} {1 / t_ours:10.0f} {1 / t_numpy:12.0f} {1 / t_torch:11.0f} {t_torch / t_ours:9.2f}x {1 / t_gemm:15.0f} "
              f"{t_gemm / t_ours:8.0%} {paired[0]:4.0%}-{paired[-1]:.0%}  {diff:.1e}   "
              f"({flops_per_image / t_ours / 1e9:.0f} vs {flops_per_image / t_gemm / 1e9:.0f} GFLOP/s)")
    if total:
        full = make_images((CIFAR_TRAIN, 32, 32, 3), seed=1)
        conv = dictionary_layer(images, DICT_ENCODINGS[1])
        # In chunks whose features are dropped: all 60,000 rows at once are 3 GB of float32,
        # more memory than a benchmark may take on a shared machine.
        start, n_features = time.perf_counter(), 0
        for chunk in np.array_split(full, -(-CIFAR_TRAIN // TOTAL_CHUNK)):
            n_features = conv.transform(chunk).shape[1]
        print(f"all {CIFAR_TRAIN:,} images, {DICT_ENCODINGS[1]}: {time.perf_counter() - start:.1f} s "
              f"-> {n_features} float32 features each (in chunks of {TOTAL_CHUNK:,} images)")


def dictionary_breakdown():
    """Where the folded layer's time goes, per position: one thread, one image, best of 150 calls.

    Both CPU paths: NumPy's passes and numba's compiled ones (``fast`` extra).
    The GEMM is timed on one tile (``CPU_TILE_BYTES``); patch rows and whole
    layers on the image; encoding and pooling are the rest of the layer.
    Calls this short mostly dodge the preemptions of a busy machine, unlike whole transforms.
    """
    from threadpoolctl import threadpool_limits

    from skconvfeat import _layer
    from skconvfeat._backend import cpu

    kernels = cpu.compiled_kernels()
    rng = np.random.default_rng(0)
    x = make_images((1, 32, 32, 3)).astype(np.float32)
    filters = rng.standard_normal((DICT_FILTERS, 3, DICT_KERNEL, DICT_KERNEL))
    prep = dictionary_layer(make_images((200, 32, 32, 3))).preprocessing_

    def per_position(func, positions):
        return best_time(func, 150, 0) / positions * 1e6

    paths = {"NumPy": None, "compiled": kernels} if kernels is not None else {"NumPy": None}
    print(f"# per position, us: one thread, one 32x32x3 image, best of 150 calls; numba {'yes' if kernels else 'NOT installed'}")
    print(f"{'encoding':26} {'path':9} {'GEMM':>6} {'patch rows':>10} {'encode+pool':>11}  GEMM share")
    with threadpool_limits(1):
        for encoding in DICT_ENCODINGS:
            spec = _layer.LayerSpec("valid", encoding, "avg", None, None, (2, 2), "sum", alpha=0.25)
            folded = _layer.prepare_weights(filters, spec, np.float32, np, prep)
            rows = _layer.patch_rows(x, folded, np)
            tile = rows[: _layer.tile_positions(folded, 4, cpu.CPU_TILE_BYTES)]
            out = np.empty((tile.shape[0], folded.matrix.shape[1]), np.float32)
            t_gemm = per_position(lambda: np.matmul(tile, folded.matrix, out=out), tile.shape[0])
            for name, k in paths.items():
                t_rows = per_position(lambda: _layer.patch_rows(x, folded, np, k), rows.shape[0])
                t_layer = per_position(lambda: _layer.folded_layer(x, folded, spec, np, cpu.CPU_TILE_BYTES, k), rows.shape[0])
                t_encode = t_layer - t_rows - t_gemm
                print(f"{encoding:26} {name:9} {t_gemm:6.2f} {t_rows:10.2f} {t_encode:11.2f}  {t_gemm / t_layer:9.0%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--workloads", default=None, help="comma-separated names (default: all on CPU, mnist,cifar10 on GPU)")
    parser.add_argument("--gpu", action="store_true", help="GPU rows: CuPy vs torch+cuDNN, 60,000 images")
    parser.add_argument("--net", action="store_true", help="CPU rows for a two-layer FixedConvNet")
    parser.add_argument("--dictionary", action="store_true", help="CIFAR-10-sized 1,600-filter k-means case")
    parser.add_argument("--images", type=int, default=1000, help="images per timed run of the dictionary case")
    parser.add_argument("--total", action="store_true", help="also time all 60,000 images once (dictionary case)")
    parser.add_argument("--breakdown", action="store_true", help="dictionary case: per-position time of each stage")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}")
    if args.dictionary and args.breakdown:
        dictionary_breakdown()
    elif args.dictionary:
        dictionary_rows(args.images, args.repeats, args.total)
    elif args.gpu:
        gpu_rows((args.workloads or "mnist,cifar10").split(","), args.repeats)
    else:
        cpu_rows((args.workloads or ",".join(WORKLOADS)).split(","), args.repeats, net=args.net)


if __name__ == "__main__":
    main()
