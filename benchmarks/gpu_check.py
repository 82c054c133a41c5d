"""One prepared GPU session: prove the CuPy path on a device, time it against cuDNN and the copy floor.

    python benchmarks/gpu_check.py --prepare              # CPU machine: data/gpu_check/ from ../shared/data
    benchmarks/gpu_check.sh                               # GPU machine: every step, under 8 minutes
    benchmarks/gpu_check.sh --steps tests,layer-cifar     # some steps only
    PYTHONPATH=. python benchmarks/gpu_check.py --quick --fake-cupy   # CPU: check this script itself

Steps, in order, each in its own process with its own time limit (a step that fails, hangs or crashes
does not stop the others), then one table:

- ``versions``: GPU, CUDA, CuPy, torch and cuDNN versions.
- ``tests``: tests/test_gpu.py, tests/test_gpu_driver.py and tests/test_gpu_folded.py (the data-derived
  folded layer) against real CuPy. Target: CPU and GPU features equal within float32 tolerance, i.e.
  every test passes and none is skipped.
- ``layer-mnist``, ``layer-cifar``: ``FixedConvTransformer(bank="random", kernel_size=5, pool_size=2,
  device="cuda")`` on 70,000 28x28 images with 16 filters and on 60,000 32x32x3 images with 64 filters,
  against the same layer in PyTorch/cuDNN (conv2d, relu, avg_pool2d; ``cudnn.benchmark`` on). Targets:
  device-resident input ``<= 1.0x`` cuDNN's time; NumPy in and out ``<= 1.5x`` the copy floor (the uint8
  images host->device plus the float32 features device->host, both through pinned memory).
- ``dictionary``: the ``coates-cifar10-1600`` preset on 60,000 CIFAR-sized images resident on the device.
  Target: under 0.35 s of compute. Its bank is fitted with fewer patches and k-means passes than the
  preset's (the transform's work does not depend on the bank's quality); CPU and GPU features are compared
  on a few images.
- ``study``: the learned arms of a CIFAR-10 (JPEG) study on a training subsample, through the command
  line (``python -m skconvfeat ... --device cuda``).

The GPU machine sees only the repository: ``--prepare`` copies the CIFAR-10 JPEG archive and samples of
real MNIST and CIFAR-10 images as ``.npy`` into the git-ignored ``data/gpu_check/`` (about 35 MB; carry
that folder). The timed steps tile those samples up to the sizes above (random pixels without them).

Only the public API is used (``FixedConvTransformer``, ``make_preset``, the command line).
Exit status: 0 every step ran (targets met or not: see the table); 1 a step failed or ran out of time;
2 bad arguments; 3 no CUDA device, so the steps that need one did not run.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "data" / "gpu_check"
DEFAULT_SHARED = REPO.parent / "shared" / "data"
CIFAR_ARCHIVE = "cifar10-jpeg.tar.gz"
SAMPLE_FILES = {"mnist": "mnist_sample.npy", "cifar": "cifar10_sample.npy"}
SAMPLE_IMAGES = 4000  # per dataset: 3 MB of MNIST, 12 MB of CIFAR-10
# The GPU machine is not said to have pytest: --prepare copies it (pure Python) into data/gpu_check/pylib,
# which the steps see last on their path, so an installed pytest wins.
PYTEST_DISTRIBUTIONS = ("pytest", "pluggy", "iniconfig", "packaging", "pygments")
PYLIB = "pylib"
RESULT_MARK = "GPU_CHECK_RESULT "  # a step process's last stdout line: this, then its table rows as JSON
TOTAL_BUDGET_S = 470  # all steps together: the issue allows 8 minutes, so a rerun fits the device time
NO_DEVICE_EXIT = 3
NO_DEVICE, OUT_OF_TIME = "skipped: no CUDA device", "skipped: out of time"  # statuses of steps not run

GPU_TESTS = ("tests/test_gpu.py", "tests/test_gpu_driver.py", "tests/test_gpu_folded.py")
# --quick runs one small test function of the new file: enough to check this script's handling of pytest.
QUICK_TESTS = ("tests/test_gpu_folded.py::test_folded_layer_device_input_stays_on_device",)

# Sizes of the work: the issue's, and --quick's (a check of the script itself, seconds on a CPU).
SIZES = {
    "full": {"mnist": 70_000, "cifar": 60_000, "dictionary": 60_000, "dictionary_filters": 1600,
             "dictionary_patches": 100_000, "study_train": 2000, "repeats": 3},
    "quick": {"mnist": 256, "cifar": 96, "dictionary": 48, "dictionary_filters": 16,
              "dictionary_patches": 2000, "study_train": 200, "repeats": 1},
}
# Timed layers: (sample, image shape, filters).
LAYERS = {"layer-mnist": ("mnist", (28, 28, 1), 16), "layer-cifar": ("cifar", (32, 32, 3), 64)}
TORCH_BATCH = 8192  # images per cuDNN call: a batch size a user would pick for 28x28 to 32x32 images
RESIDENT_TARGET, FLOOR_TARGET, DICTIONARY_TARGET_S = 1.0, 1.5, 0.35
FEATURE_RTOL = 1e-4  # float32 features of two implementations: largest difference over largest feature


@dataclass(frozen=True)
class Step:
    budget_s: int  # this step's time limit (also cut to what is left of TOTAL_BUDGET_S)
    needs: str  # "nothing", "cupy" (CuPy sees a device) or "torch" (PyTorch sees one)
    what: str


STEPS = {
    "versions": Step(20, "nothing", "GPU, CUDA, CuPy and torch versions"),
    "tests": Step(150, "cupy", "the GPU tests against real CuPy"),
    "layer-mnist": Step(45, "cupy", "70,000 x 28x28, 16 filters: ours vs cuDNN and the copy floor"),
    "layer-cifar": Step(60, "cupy", "60,000 x 32x32x3, 64 filters: ours vs cuDNN and the copy floor"),
    "dictionary": Step(75, "cupy", "coates-cifar10-1600 on 60,000 images resident on the device"),
    "study": Step(150, "torch", "learned arms of a CIFAR-10 study with --device cuda"),  # last: gets what is left
}


def row(step, status, seconds=None, ratio="", target="", note=""):
    """One line of the final table."""
    return {"step": step, "status": status, "seconds": seconds, "ratio": ratio, "target": target, "note": note}


# --------------------------------------------------------------------------- arguments


def _step_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STEPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown step(s) {', '.join(unknown) or repr(text)}; choose from {', '.join(STEPS)}")
    return [name for name in STEPS if name in names]  # always in the order above


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gpu_check", description=__doc__.splitlines()[0],
        epilog="Exit status: 0 every step ran (see the table for targets); 1 a step failed or ran out of time; "
               "2 bad arguments; 3 no CUDA device for the steps that need one.", allow_abbrev=False,
    )
    parser.add_argument("--prepare", action="store_true",
                        help="copy and extract the data the GPU machine needs into --data (run on the CPU machine)")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="the shared data folder --prepare reads (default: ../shared/data)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the prepared data (default: data/gpu_check)")
    parser.add_argument("--steps", type=_step_list, default=list(STEPS),
                        help=f"comma-separated steps to run, from {', '.join(STEPS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    parser.add_argument("--fake-cupy", action="store_true",
                        help="CPU check only: tests/fake_cupy.py plays CuPy, torch runs on the CPU, the study on digits")
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S,
                        help="seconds for all steps together (default: %(default)s)")
    parser.add_argument("--run-step", choices=list(STEPS), help=argparse.SUPPRESS)  # a step's own process
    return parser


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.prepare and (args.quick or args.fake_cupy or args.run_step):
        parser.error("--prepare runs alone, on the CPU machine (no --quick, --fake-cupy)")
    if args.budget <= 0:
        parser.error(f"argument --budget: expected a positive number of seconds, got {args.budget}")
    args.sizes = SIZES["quick" if args.quick else "full"]
    return args


# --------------------------------------------------------------------------- --prepare (CPU machine)


def _save_atomic(path, write):
    """Write ``path`` through a temporary file renamed at the end: an interruption leaves no half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _sample(images, seed):
    index = np.sort(np.random.default_rng(seed).choice(len(images), size=min(SAMPLE_IMAGES, len(images)), replace=False))
    return np.ascontiguousarray(images[index])


def prepare(args):
    """Copy the CIFAR-10 JPEG archive and save real MNIST and CIFAR-10 samples as .npy into ``args.data``."""
    from skconvfeat.datasets import fetch_mnist, load_image_folder

    archive = args.shared / CIFAR_ARCHIVE
    if not archive.is_file() or not (args.shared / "mnist").is_dir():
        print(f"gpu_check: error: {args.shared} lacks {CIFAR_ARCHIVE} or mnist/ (see its README.md)", file=sys.stderr)
        return 1
    args.data.mkdir(parents=True, exist_ok=True)
    _save_atomic(args.data / CIFAR_ARCHIVE, lambda tmp: shutil.copyfile(archive, tmp))
    _copy_distributions(PYTEST_DISTRIBUTIONS, args.data / PYLIB)
    # The test split decodes 5x faster than the training one; only pixel statistics matter here.
    samples = {
        "cifar": load_image_folder(archive, subset="test").images,
        "mnist": fetch_mnist(data_home=args.shared, subset="train", download_if_missing=False).images,
    }
    for name, images in samples.items():
        sample = _sample(images, seed=0)
        _save_atomic(args.data / SAMPLE_FILES[name], lambda tmp, a=sample: np.save(open(tmp, "wb"), a))
    total = sum(path.stat().st_size for path in args.data.rglob("*") if path.is_file()) / 2**20
    print(f"gpu_check: prepared {args.data} ({total:.0f} MiB); carry it to the GPU machine "
          f"(it is git-ignored), then run benchmarks/gpu_check.sh there")
    return 0


def _copy_distributions(names, target):
    """Copy the installed files of the distributions ``names`` (modules and metadata) into ``target``."""
    from importlib.metadata import distribution

    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        for name in names:
            dist = distribution(name)
            for file in dist.files:
                if ".." in file.parts or "__pycache__" in file.parts:  # console scripts, bytecode
                    continue
                (tmp / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dist.locate_file(file), tmp / file)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_images(data, sample, n, shape):
    """``n`` uint8 images of ``shape``: the prepared real sample tiled, or random pixels; and which."""
    path = data / SAMPLE_FILES[sample]
    if path.is_file():
        base, source = np.load(path).reshape(-1, *shape), f"real {sample} pixels ({path.name}, tiled)"
    else:
        base = np.random.default_rng(0).integers(0, 256, (min(n, SAMPLE_IMAGES), *shape), dtype=np.uint8)
        source = f"random pixels ({path} missing: run --prepare)"
    return np.ascontiguousarray(np.resize(base, (n, *shape))), source


# --------------------------------------------------------------------------- one step's process


def install_fake_cupy():
    """Make ``import cupy`` give tests/fake_cupy.py's NumPy-backed stand-in (CPU checks of this script only)."""
    sys.path.insert(0, str(REPO / "tests"))
    from fake_cupy import FakeCupy

    fake = FakeCupy()
    free = fake.cuda.Device().mem_info
    # What this script itself asks of CuPy beyond what skconvfeat does.
    fake.cuda.Device = lambda: SimpleNamespace(mem_info=free, synchronize=lambda: None)
    fake.cuda.runtime.getDeviceProperties = lambda index: {"name": b"fake CuPy (tests/fake_cupy.py)"}
    fake.cuda.runtime.runtimeGetVersion = fake.cuda.runtime.driverGetVersion = lambda: 0
    sys.modules["cupy"] = fake
    return fake


class Device:
    """CuPy and torch as a step uses them: real, or the fake with torch on the CPU."""

    def __init__(self, fake):
        import cupy
        import torch

        self.fake, self.cp, self.torch = fake, cupy, torch
        self.torch_device = "cpu" if fake else "cuda"
        torch.backends.cudnn.benchmark = True  # cuDNN's fastest algorithm for each shape: the strongest rival

    def synchronize(self):
        self.cp.cuda.Device().synchronize()  # the whole device: CuPy's streams and torch's
        if not self.fake:
            self.torch.cuda.synchronize()

    def best_time(self, func, repeats):
        """Best of ``repeats`` synchronised runs after one warm-up (kernel compilation, autotuning, pools)."""
        func()
        self.synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            func()
            self.synchronize()
            times.append(time.perf_counter() - start)
        return min(times)

    def pinned(self, shape, dtype):
        count = int(np.prod(shape))
        memory = self.cp.cuda.alloc_pinned_memory(count * np.dtype(dtype).itemsize)
        return np.frombuffer(memory, dtype, count).reshape(shape)


def relative_difference(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), np.finfo(np.float32).tiny))


def step_versions(args):
    lines = [f"python {platform.python_version()}, numpy {np.__version__}, {platform.node()}"]
    try:
        import cupy

        runtime = cupy.cuda.runtime
        name = runtime.getDeviceProperties(0)["name"]
        lines.append(f"GPU {name.decode() if isinstance(name, bytes) else name}; CUDA runtime {runtime.runtimeGetVersion()}, driver {runtime.driverGetVersion()}; "
                     f"CuPy {'fake' if args.fake_cupy else cupy.__version__}")
    except Exception as exc:  # no CuPy or no device: say so, the other steps are skipped
        lines.append(f"CuPy: {type(exc).__name__}: {exc}")
    try:
        import torch

        cuda = torch.cuda.is_available()
        lines.append(f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
                     f"sees {torch.cuda.get_device_name(0) if cuda else 'no CUDA device'})")
    except ImportError as exc:
        lines.append(f"torch: {exc}")
    print("\n".join(lines))
    return [row("versions", "ok", note="; ".join(lines[1:]))]


def step_layer(args, name):
    """Ours against cuDNN (both resident on the device) and NumPy in/out against the copy floor."""
    from skconvfeat import FixedConvTransformer

    sample, shape, n_filters = LAYERS[name]
    n, repeats = args.sizes[sample], args.sizes["repeats"]
    images, source = load_images(args.data, sample, n, shape)
    device = Device(args.fake_cupy)
    cp, torch = device.cp, device.torch
    conv = FixedConvTransformer(bank="random", bank_params={"n_filters": n_filters}, kernel_size=5, pool_size=2,
                                device="cuda", random_state=0).fit(images[:1])
    n_out = conv.n_features_out_
    print(f"{name}: {n:,} images {shape}, {n_filters} filters 5x5, relu, 2x2 average pooling -> {n_out} "
          f"features; {source}")
    resident = cp.asarray(images)
    t_resident = device.best_time(lambda: conv.transform(resident), repeats)
    t_numpy = device.best_time(lambda: conv.transform(images), repeats)

    import torch.nn.functional as F

    weight = torch.as_tensor(conv.filters_.astype(np.float32), device=device.torch_device)
    x_all = torch.as_tensor(resident, device=device.torch_device)  # the CuPy array itself, not a copy
    out = torch.empty((n, n_out), dtype=torch.float32, device=device.torch_device)

    def cudnn():
        with torch.no_grad():
            for b in range(0, n, TORCH_BATCH):
                x = x_all[b : b + TORCH_BATCH].permute(0, 3, 1, 2).float()
                out[b : b + TORCH_BATCH] = F.avg_pool2d(F.relu(F.conv2d(x, weight)), 2).flatten(1)

    t_cudnn = device.best_time(cudnn, repeats)
    difference = relative_difference(out[:512].cpu().numpy(), conv.transform(resident[:512]).get())

    host_in, host_out = device.pinned(images.shape, np.uint8), device.pinned((n, n_out), np.float32)
    host_in[...] = images
    device_in, device_out = cp.empty(images.shape, np.uint8), cp.empty((n, n_out), np.float32)
    t_upload = device.best_time(lambda: device_in.set(host_in), repeats)
    t_floor = device.best_time(lambda: (device_in.set(host_in), device_out.get(out=host_out)), repeats)
    print(f"{name}: resident ours {t_resident:.4f} s, cuDNN {t_cudnn:.4f} s; NumPy in/out ours {t_numpy:.4f} s, "
          f"copy floor {t_floor:.4f} s (upload {t_upload:.4f} s); max|ours - torch| / max = {difference:.1e}")
    label = name.split("-")[1]
    rows = [
        _target_row(args, f"{label} resident/cuDNN", t_resident / t_cudnn, RESIDENT_TARGET,
                    f"ours {t_resident * 1e3:.1f} ms, cuDNN {t_cudnn * 1e3:.1f} ms ({n:,} images)"),
        _target_row(args, f"{label} NumPy/floor", t_numpy / t_floor, FLOOR_TARGET,
                    f"ours {t_numpy * 1e3:.1f} ms, floor {t_floor * 1e3:.1f} ms (upload {t_upload * 1e3:.1f} ms)"),
    ]
    if not difference <= FEATURE_RTOL:
        rows.append(row(f"{label} ours == torch", "FAILED", note=f"features differ by {difference:.1e} of the largest"))
    return rows


def _target_status(args, met):
    """ok or missed; "ran" for --quick or --fake-cupy, whose times say nothing about a GPU."""
    if args.quick or args.fake_cupy:
        return "ran"
    return "ok" if met else "missed"


def _target_row(args, step, ratio, target, note):
    return row(step, _target_status(args, ratio <= target), ratio=f"{ratio:.2f}x", target=f"<= {target}x", note=note)


def step_dictionary(args):
    """The 1,600-filter preset on 60,000 images resident on the device: compute time, and CPU == GPU."""
    from skconvfeat import make_preset

    n, repeats, n_filters = args.sizes["dictionary"], max(1, args.sizes["repeats"] - 1), args.sizes["dictionary_filters"]
    images, source = load_images(args.data, "cifar", n, (32, 32, 3))
    device = Device(args.fake_cupy)
    cp = device.cp
    start = time.perf_counter()
    conv = make_preset("coates-cifar10-1600", bank_params={"n_filters": n_filters, "max_iter": 3},
                       n_patches=args.sizes["dictionary_patches"], device="cuda", random_state=0)
    conv.fit(images[:SAMPLE_IMAGES])
    fit_s = time.perf_counter() - start
    print(f"dictionary: coates-cifar10-1600 with {n_filters} filters fitted in {fit_s:.1f} s on "
          f"{min(n, SAMPLE_IMAGES):,} images ({source}); {conv.n_features_out_} features per image")
    resident = cp.asarray(images)
    t_compute = device.best_time(lambda: conv.transform(resident), repeats)
    pool = "n/a (fake CuPy)" if args.fake_cupy else f"{cp.get_default_memory_pool().total_bytes() / 2**30:.1f} GiB"
    few = images[:32]
    difference = relative_difference(conv.transform(cp.asarray(few)).get(),
                                     conv.set_params(device="cpu").transform(few))
    print(f"dictionary: {n:,} images resident: {t_compute:.3f} s; device memory pool {pool}; "
          f"CPU vs GPU on {len(few)} images: {difference:.1e} of the largest feature")
    rows = [row("1600 filters compute", _target_status(args, t_compute < DICTIONARY_TARGET_S),
                ratio=f"{t_compute:.3f} s", target=f"< {DICTIONARY_TARGET_S} s",
                note=f"{n:,} images; {n_filters} filters; memory pool {pool}")]
    rows.append(row("1600 filters CPU == GPU", "ok" if difference <= FEATURE_RTOL else "FAILED",
                    ratio=f"{difference:.1e}", target=f"<= {FEATURE_RTOL:.0e}", note=f"{len(few)} images"))
    return rows


def run_step(args):
    """A step's own process: compute, print the rows after RESULT_MARK, exit 0 (an exception exits 1)."""
    if args.fake_cupy:
        install_fake_cupy()
    if args.run_step == "versions":
        rows = step_versions(args)
    elif args.run_step == "dictionary":
        rows = step_dictionary(args)
    else:
        rows = step_layer(args, args.run_step)
    print(RESULT_MARK + json.dumps(rows), flush=True)
    return 0


# --------------------------------------------------------------------------- the driver


def _command(name, args, scratch):
    """The command line of step ``name``: this script, pytest or the skconvfeat command line."""
    python = sys.executable
    if name == "tests":
        tests = QUICK_TESTS if args.quick else GPU_TESTS
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={scratch / 'junit.xml'}", *tests]
    if name == "study":
        common = ["--banks", "identity", "--no-transfer", "--n-jobs", "1", "--json",
                  "--train-size", str(args.sizes["study_train"])]
        if args.fake_cupy:  # no GPU for PyTorch: digits on the CPU, to check the plumbing
            return [python, "-m", "skconvfeat", "--dataset", "digits", "--repeats", "1", "--folds", "2",
                    "--device", "cpu", *common]
        return [python, "-m", "skconvfeat", "--dataset", "cifar10-jpeg", "--data-home", str(args.data),
                "--layers", "1,2", "--device", "cuda", *common]
    flags = [f"--data={args.data}"] + ["--quick"] * args.quick + ["--fake-cupy"] * args.fake_cupy
    return [python, str(Path(__file__).resolve()), "--run-step", name, *flags]


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def _parse_tests(name, rc, out, err, scratch, args):
    report = scratch / "junit.xml"
    if not report.is_file():
        return [row(name, "FAILED", note=f"pytest exited {rc} without a report: {_last_line(err or out)}")]
    suites = ElementTree.parse(report).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    count = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    failed = [case.get("name") for s in suites for case in s.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    summary = (f"{count['tests'] - count['failures'] - count['errors'] - count['skipped']} passed, "
               f"{count['failures'] + count['errors']} failed, {count['skipped']} skipped")
    if failed:
        return [row(name, "FAILED", note=f"{summary}: {', '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}")]
    if rc != 0:
        return [row(name, "FAILED", note=f"pytest exited {rc}: {_last_line(out)}")]
    if count["skipped"] and not args.fake_cupy:  # on a device, a skipped GPU test is a GPU test not run
        return [row(name, "FAILED", note=f"{summary}: CuPy did not see the device in pytest")]
    note = summary + ("; real-CuPy cases skip with the fake" if args.fake_cupy else "")
    return [row(name, "ok", ratio="equal", target="float32 tol.", note=note)]


def _parse_study(name, rc, out, err, scratch, args):
    if rc != 0:
        return [row(name, "FAILED", note=f"skconvfeat exited {rc}: {_last_line(err)}")]
    results = json.loads(out)
    device = results["learned_training"]["device"]
    # Arms trained in PyTorch are the ones without a transform time of their own.
    torch_arms = [arm for arm in results["arms"] if all(t is None for t in arm["transform_time"])]
    chance = 1 / results["n_classes"]
    scores = ", ".join(f"{arm['name']} {arm['mean']:.1%}" for arm in torch_arms)
    fit = max((max(arm["fit_time"]) for arm in torch_arms), default=0.0)
    problems = [] if torch_arms else ["no arm trained in PyTorch"]
    problems += [f"learned arms ran on {device!r}"] * (device != ("cpu" if args.fake_cupy else "cuda"))
    problems += [f"{arm['name']} at chance ({arm['mean']:.1%})" for arm in torch_arms if arm["mean"] <= 1.2 * chance]
    note = (f"{results['dataset']}, {results['evaluation']['n_train']} train images: {scores}; "
            f"longest fit {fit:.1f} s")
    return [row(name, "FAILED" if problems else "ok", note="; ".join(problems + [note]))]


def _parse_own(name, rc, out, err, scratch, args):
    marks = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if rc != 0 or not marks:
        return [row(name, "FAILED", note=f"exited {rc}: {_last_line(err or out)}")]
    return json.loads(marks[-1][len(RESULT_MARK):])


PARSERS = {"tests": _parse_tests, "study": _parse_study}


def _echo(text, stream):
    for line in text.splitlines():
        if not line.startswith(RESULT_MARK):
            print(f"  | {line}", file=stream)


def run_command(command, timeout_s, data):
    """``(returncode, stdout, stderr)``; on timeout the whole process group is killed and rc is None."""
    path = [str(REPO), os.environ.get("PYTHONPATH"), str(data / PYLIB)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
        return process.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # pytest or the study may have started processes of their own
        out, err = process.communicate()
        return None, out, err


def probe(args):
    """``{need: reason it is missing, or None}`` for the steps' needs, decided once, in this process."""
    if args.fake_cupy:
        install_fake_cupy()
        return {"nothing": None, "cupy": None, "torch": None}
    from skconvfeat import FixedConvTransformer

    try:  # the public way to ask: fit fails on device="cuda" without a usable GPU
        FixedConvTransformer(bank="random", bank_params={"n_filters": 1}, kernel_size=1,
                             device="cuda").fit(np.zeros((1, 4, 4), np.uint8))
        cupy = None
    except RuntimeError:  # the versions step shows why (CuPy missing, or no device)
        cupy = f"{NO_DEVICE} (CuPy sees none)"
    try:
        import torch

        torch_cuda = None if torch.cuda.is_available() else f"{NO_DEVICE} (PyTorch sees none)"
    except ImportError:
        torch_cuda = f"{NO_DEVICE} (PyTorch is not installed)"
    return {"nothing": None, "cupy": cupy, "torch": torch_cuda}


def run_all(args):
    started = time.perf_counter()
    print(f"# gpu_check {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}: "
          f"{' '.join(sys.argv[1:]) or '(all steps)'}{' [fake CuPy: a check of the script]' if args.fake_cupy else ''}",
          flush=True)
    missing = probe(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        for name in args.steps:
            step, left = STEPS[name], args.budget - (time.perf_counter() - started)
            if missing[step.needs]:
                rows.append(row(name, missing[step.needs]))
                continue
            if left < 5:
                rows.append(row(name, f"{OUT_OF_TIME} ({args.budget:g} s for all steps)"))
                continue
            scratch = Path(tmp) / name
            scratch.mkdir()
            timeout_s = min(step.budget_s, left)
            print(f"## {name}: {step.what} (limit {timeout_s:.0f} s)", flush=True)
            start = time.perf_counter()
            rc, out, err = run_command(_command(name, args, scratch), timeout_s, args.data)
            seconds = time.perf_counter() - start
            _echo(out if name != "study" else "", sys.stdout)  # the study's stdout is its JSON
            _echo(err, sys.stdout)
            if rc is None:
                step_rows = [row(name, "FAILED", note=f"timed out after {timeout_s:.0f} s: {_last_line(err or out)}")]
            else:
                step_rows = PARSERS.get(name, _parse_own)(name, rc, out, err, scratch, args)
            step_rows[0]["seconds"] = seconds
            rows.extend(step_rows)
    print_table(rows)
    statuses = [r["status"] for r in rows]
    if any(status == "FAILED" or status.startswith(OUT_OF_TIME) for status in statuses):
        code = 1
    elif any(status.startswith(NO_DEVICE) for status in statuses):
        code = NO_DEVICE_EXIT
    else:
        code = 0
    meaning = {0: "every step ran (targets: see the table)", 1: "a step FAILED or ran out of time",
               NO_DEVICE_EXIT: "no CUDA device: the steps that need one were not run"}[code]
    print(f"gpu_check: {meaning}; {time.perf_counter() - started:.0f} s in all; exit {code}")
    return code


def print_table(rows):
    columns = [("step", "step"), ("status", "status"), ("time", "seconds"), ("ratio", "ratio"),
               ("target", "target"), ("note", "note")]
    cells = [[h for h, _ in columns]] + [
        [f"{r[key]:.1f}s" if key == "seconds" and r[key] is not None else str(r[key] or "") for _, key in columns]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns) - 1)]
    print()
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.prepare:
        return prepare(args)
    if args.run_step:
        return run_step(args)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
