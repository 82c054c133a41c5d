"""Throughput of FixedConvTransformer against the PyTorch code a user would write, side by side.

    python benchmarks/bench_transform.py            # CPU: ours vs torch conv2d+relu+pool on the CPU
    python benchmarks/bench_transform.py --gpu      # GPU rows instead (needs CuPy and CUDA)
    python benchmarks/bench_transform.py --net      # CPU: a two-layer FixedConvNet vs the same torch network

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
TORCH_BATCH = 1024  # images per torch call: a batch size a user would pick; whole-set calls were no faster


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


def torch_layer(images, filters, device):
    """What a user writes: numpy -> torch (-> .cuda()) -> conv2d -> relu -> avg_pool2d -> numpy."""
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(filters.astype(np.float32)).to(device)

    def run():
        out = []
        with torch.no_grad():
            for b in range(0, len(images), TORCH_BATCH):
                x = torch.from_numpy(images[b : b + TORCH_BATCH]).to(device).permute(0, 3, 1, 2).float()
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


def torch_net(images, filters):
    """The same two layers as a user writes them in torch, NumPy in and out."""
    import torch
    import torch.nn.functional as F

    weights = [torch.from_numpy(f.astype(np.float32)) for f in filters]

    def run():
        out = []
        with torch.no_grad():
            for b in range(0, len(images), TORCH_BATCH):
                x = torch.from_numpy(images[b : b + TORCH_BATCH]).permute(0, 3, 1, 2).float()
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
            run_torch = torch_net(images, [layer.filters_ for _, layer in conv.layers_])
        else:
            conv, run_ours = ours(images, "cpu")
            run_torch = torch_layer(images, conv.filters_, "cpu")
        diff = np.abs(run_ours() - run_torch()).max()
        t_ours = best_time(run_ours, repeats)
        t_torch = best_time(run_torch, repeats)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--workloads", default=None, help="comma-separated names (default: all on CPU, mnist,cifar10 on GPU)")
    parser.add_argument("--gpu", action="store_true", help="GPU rows: CuPy vs torch+cuDNN, 60,000 images")
    parser.add_argument("--net", action="store_true", help="CPU rows for a two-layer FixedConvNet")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}")
    if args.gpu:
        gpu_rows((args.workloads or "mnist,cifar10").split(","), args.repeats)
    else:
        cpu_rows((args.workloads or ",".join(WORKLOADS)).split(","), args.repeats, net=args.net)


if __name__ == "__main__":
    main()
