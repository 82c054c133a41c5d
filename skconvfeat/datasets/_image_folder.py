"""Load ``[split/]class/image`` folders and archives of PNG/JPEG images."""

import io
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.utils import Bunch

from ._archive import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_TOTAL_BYTES,
    is_archive,
    iter_archive_files,
)
from ._errors import check_choice, corrupt_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_PILLOW_FORMATS = ("PNG", "JPEG")
_ALL = "all"


def load_image_folder(path, *, subset=None, image_size=None, grayscale=False,
                      return_X_y=False, max_members=DEFAULT_MAX_MEMBERS,
                      max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Load a folder or archive of images laid out as ``[split/]class/image``.

    Each class is a folder of PNG or JPEG files; class names sorted
    alphabetically give the label order (over all splits, so that labels agree
    between splits). An optional first level holds splits such as ``train/``
    and ``test/``. Hidden files and folders and non-image files are ignored.
    Archives are read in memory, never extracted; members with ``..`` or
    absolute paths, links and special files are refused.

    Needs Pillow (``pip install pillow`` or ``pip install skconvfeat[images]``).

    Parameters
    ----------
    path : str or path-like
        A folder, or a ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``,
        ``.tar.xz`` or ``.zip`` archive.
    subset : str, default=None
        The split to load when the layout has splits, or ``"all"`` to load
        every split in one pass (the Bunch then has a ``split`` array). Must be
        None when it has none.
    image_size : int or (int, int), default=None
        Resize every image to ``(height, width)`` (an int means square).
        If None, all images must already have the same size.
    grayscale : bool, default=False
        Convert to grey levels, giving ``images`` of shape (n, h, w); else RGB,
        (n, h, w, 3).
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    max_members : int, default=1_000_000
        Refuse archives with more members.
    max_total_bytes : int, default=4 GiB
        Refuse archives holding more bytes, uncompressed.

    Returns
    -------
    data : Bunch
        ``data`` (n, h*w*c) uint8, ``images`` (n, h, w[, 3]) uint8, ``target``
        (n,) int64, ``target_names``, ``filenames`` (paths inside the folder or
        archive), ``DESCR``, and ``split`` when ``subset="all"``.
    (data, target) : tuple if ``return_X_y`` is True

    Examples
    --------
    >>> from skconvfeat.datasets import load_image_folder
    >>> cifar = load_image_folder("cifar10-jpeg.tar.gz", subset="test")  # doctest: +SKIP
    >>> cifar.images.shape  # doctest: +SKIP
    (10000, 32, 32, 3)
    """
    Image = _import_pillow()
    path = Path(path)
    files = _read_image_files(path, max_members, max_total_bytes)
    entries = _parse_layout(files, path)
    class_names = sorted({entry[1] for entry in entries})
    selected = _select_subset(entries, subset, path)
    images = _decode_images(
        Image, selected, path, _normalize_size(image_size), "L" if grayscale else "RGB"
    )
    label_of = {name: label for label, name in enumerate(class_names)}
    target = np.array([label_of[class_name] for _, class_name, _, _ in selected], dtype=np.int64)
    data = images.reshape(len(images), -1)
    if return_X_y:
        return data, target
    bunch = Bunch(
        data=data,
        images=images,
        target=target,
        target_names=np.array(class_names),
        filenames=np.array([name for _, _, name, _ in selected]),
        DESCR=_describe(path, subset, images, class_names),
    )
    if subset == _ALL:
        bunch.split = np.array([split or "" for split, _, _, _ in selected])
    return bunch


def _import_pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "load_image_folder needs Pillow to decode images: "
            "pip install pillow (or pip install skconvfeat[images])."
        ) from exc
    return Image


def _is_image(name):
    parts = PurePosixPath(name).parts
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
    return not hidden and name.lower().endswith(IMAGE_SUFFIXES)


def _read_image_files(path, max_members, max_total_bytes):
    """Return ``[(relative_name, bytes)]`` for the image files under ``path``."""
    if path.is_dir():
        return [
            (file.relative_to(path).as_posix(), file.read_bytes())
            for file in sorted(path.rglob("*"))
            if file.is_file() and _is_image(file.relative_to(path).as_posix())
        ]
    if not path.exists():
        raise FileNotFoundError(f"No such folder or archive: {path}")
    if not is_archive(path):
        raise ValueError(
            f"{path} is neither a folder nor an archive with one of the suffixes "
            ".tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .zip."
        )
    return list(iter_archive_files(
        path, wanted=_is_image, max_members=max_members, max_total_bytes=max_total_bytes
    ))


def _parse_layout(files, path):
    """Return sorted ``[(split or None, class, name, bytes)]``; check the layout."""
    if not files:
        raise ValueError(f"No PNG or JPEG image found in {path}.")
    by_depth = {}
    for name, blob in files:
        by_depth.setdefault(len(PurePosixPath(name).parts), []).append((name, blob))
    if len(by_depth) != 1 or not by_depth.keys() <= {2, 3}:
        examples = ", ".join(repr(found[0][0]) for found in by_depth.values())
        raise ValueError(
            f"{path} must hold images as class/image or split/class/image; "
            f"found images at different or other depths, e.g. {examples}."
        )
    entries = []
    for name, blob in files:
        *split, class_name, _ = PurePosixPath(name).parts
        entries.append((split[0] if split else None, class_name, name, blob))
    return sorted(entries, key=lambda entry: (entry[0] or "", entry[1], entry[2]))


def _select_subset(entries, subset, path):
    splits = sorted({entry[0] for entry in entries} - {None})
    if not splits:
        if subset is not None:
            raise ValueError(f"{path} has no split folders: pass subset=None, not {subset!r}.")
        return entries
    if subset is None:
        raise ValueError(
            f"{path} is split into {splits}: pass subset= one of them, or subset='all'."
        )
    check_choice(subset, param="subset", func="load_image_folder", choices=(*splits, _ALL))
    return entries if subset == _ALL else [entry for entry in entries if entry[0] == subset]


def _normalize_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    height, width = image_size
    return (int(height), int(width))


def _decode_images(Image, entries, path, size, mode):
    """Decode the images into one preallocated uint8 array.

    Sequential on purpose: on 32x32 JPEGs most of the ~85 us per image is
    Pillow's Python code, which holds the GIL, and two threads measured no
    faster than one.
    """
    first = _decode(Image, entries[0], path, size, mode)
    images = np.empty((len(entries), *first.shape), dtype=np.uint8)
    for i, entry in enumerate(entries):
        image = first if i == 0 else _decode(Image, entry, path, size, mode)
        if image.shape != first.shape:
            raise ValueError(
                f"{entry[2]} in {path} has shape {image.shape}, but {entries[0][2]} has "
                f"{first.shape}; pass image_size=(height, width) to resize all images."
            )
        images[i] = image
    return images


def _decode(Image, entry, path, size, mode):
    _, _, name, blob = entry
    try:
        # formats= also keeps untrusted bytes away from Pillow's other decoders.
        with Image.open(io.BytesIO(blob), formats=_PILLOW_FORMATS) as image:
            image = image.convert(mode) if image.mode != mode else image
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        # PIL.UnidentifiedImageError and truncated-image errors are OSErrors.
        raise corrupt_file(f"{path} (member {name})", f"cannot decode the image: {exc}") from exc


def _describe(path, subset, images, class_names):
    which = f" (subset {subset!r})" if subset else ""
    return (
        f"Images loaded from {path}{which}: {len(images)} images of shape "
        f"{images.shape[1:]}, {len(class_names)} classes: {', '.join(class_names)}."
    )
