"""A directory that keeps a streamed preset run's ridge sums, so that the same run, started again, goes on.

:func:`skconvfeat.study.run_preset` streams hundreds of thousands of training rows into a
:class:`~skconvfeat.GramRidgeClassifier` (hours on two cores for the largest presets); a
:class:`Checkpoint` saves the head's sums as they grow and refuses to mix them with another run's.
"""

import contextlib
import hashlib
import json
import os
import time

import numpy as np

__all__ = ["Checkpoint", "run_identity"]


class Checkpoint:
    """A directory that keeps an interrupted run's ridge sums, so that the same run goes on from them.

    ``run.json`` names the run (preset, settings, a digest of the images and labels) and ``probe.npy``
    holds the features of a few images: a run that differs in either, or whose refitted transformer
    computes other features (k-means may round differently on another machine), is refused rather than
    mixed with sums it did not make. ``head.npz`` (:meth:`GramRidgeClassifier.save_stream`) is rewritten,
    by rename, at most every ``every`` seconds while the training rows stream in; the images done are its
    rows divided by the copies of each image. A finished run deletes the directory's files.
    """

    _FILES = ("run.json", "probe.npy", "head.npz")
    PROBE_IMAGES = 4

    def __init__(self, directory, run, every):
        self.directory, self.run, self.every = os.fspath(directory), run, every
        self._last = time.perf_counter()

    def _path(self, name):
        return os.path.join(self.directory, name)

    def resume(self, head, probe, n_views, total, chunk):
        """Images of the training stream already in the saved sums (loaded into ``head``); 0 for a new run."""
        os.makedirs(self.directory, exist_ok=True)
        if not os.path.exists(self._path("run.json")):
            with contextlib.suppress(FileNotFoundError):  # sums of no known run: never to be resumed
                os.remove(self._path("head.npz"))
            _write_atomically(self._path("probe.npy"), lambda file: np.save(file, probe))
            _write_atomically(self._path("run.json"), lambda file: file.write(json.dumps(self.run).encode()))
            return 0
        self._check_same_run(probe)
        if not os.path.exists(self._path("head.npz")):
            return 0
        head.load_stream(self._path("head.npz"))
        done, leftover = divmod(head.n_samples_seen_, n_views)
        if leftover or done > total or (done % chunk and done != total):
            raise ValueError(f"The checkpoint {self.directory} holds {head.n_samples_seen_:,} rows, which is no whole "
                             f"number of {chunk}-image chunks of {n_views} copies; delete it to start afresh.")
        return done

    def _check_same_run(self, probe):
        try:
            with open(self._path("run.json"), "rb") as file:
                saved = json.loads(file.read().decode())
            saved_probe = np.load(self._path("probe.npy"), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"The checkpoint {self.directory} cannot be read ({exc}); delete it to start "
                             "afresh.") from exc
        if not isinstance(saved, dict):
            raise ValueError(f"The checkpoint {self.directory} cannot be read (run.json holds no run); delete it.")
        differ = sorted(key for key in set(saved) | set(self.run) if saved.get(key) != self.run.get(key))
        if differ:
            raise ValueError(f"The checkpoint {self.directory} was saved by another run (it differs in {differ}); "
                             "delete it, or give this run another checkpoint directory.")
        if saved_probe.shape != probe.shape or not np.allclose(saved_probe, probe, rtol=1e-4, atol=1e-6):
            raise ValueError(f"The checkpoint {self.directory} was saved with other features: this machine's "
                             "transformer, fitted with the same settings, computes different ones. Delete it "
                             "to start afresh.")

    def save(self, head, force=False):
        """Save ``head``'s sums if ``every`` seconds have passed since the last save (always with ``force``)."""
        if force or time.perf_counter() - self._last >= self.every:
            head.save_stream(self._path("head.npz"))
            self._last = time.perf_counter()
            return True
        return False

    def remove(self):
        for name in self._FILES:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(name))
        with contextlib.suppress(OSError):  # not empty: the user keeps other files there
            os.rmdir(self.directory)


def _write_atomically(path, write):
    partial = f"{path}.partial"
    try:
        with open(partial, "wb") as file:
            write(file)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)


def run_identity(preset, preset_params, X, y, flip, shift, rotate, chunk, random_state):
    """What makes two runs' sums the same: settings and a digest of the images and labels, as JSON values."""
    digest = hashlib.sha256()
    for array in (X, y):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return {"format": 1, "preset": preset, "preset_params": json.loads(json.dumps(preset_params, default=repr)),
            "flip": bool(flip), "shift": int(shift), "rotate": float(rotate), "chunk": int(chunk),
            "random_state": int(random_state), "images": digest.hexdigest()}
