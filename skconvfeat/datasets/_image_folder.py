"""Load ``[split/]class/image`` folders and archives of PNG/JPEG images."""

import io
import math
import os
import stat
from numbers import Integral
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_parameter_constraints

from ._archive import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_TOTAL_BYTES,
    Limits,
    UniqueNames,
    canonical_name,
    is_archive,
    iter_archive_files,
)
from ._errors import check_choice, corrupt_file, too_large

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_PILLOW_FORMATS = ("PNG", "JPEG")
_ALL = "all"
_CONSTRAINTS = {
    "max_members": [Interval(Integral, 1, None, closed="left")],
    "max_total_bytes": [Interval(Integral, 1, None, closed="left")],
    "grayscale": ["boolean"],  # a string such as "no" would otherwise count as true
}


def load_image_folder(path, *, subset=None, image_size=None, grayscale=False,
                      return_X_y=False, max_members=DEFAULT_MAX_MEMBERS,
                      max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Load a folder or archive of images laid out as ``[split/]class/image``.

    Each class is a folder of PNG or JPEG files; class names sorted
    alphabetically give the label order (over all splits, so that labels agree
    between splits). An optional first level holds splits such as ``train/``
    and ``test/``. Hidden files and folders and non-image files are ignored.
    Archives are read in memory, never extracted; members with ``..`` or
    absolute paths, links and special files are refused. Names are read in
    Unicode NFC: a class folder spelled in NFC in one split and in NFD (as
    macOS writes it) in another is one class; a file listed twice (a name
    repeated in an archive, or spelled both ways) raises an error.

    In a folder, symbolic links are followed, to files and to folders alike (a
    class folder may be a link to data kept elsewhere). A link that is broken,
    leads to something other than a regular file, or reaches a folder a second
    time (a loop, or two links to one folder) raises an error naming it.

    Images are converted to 8 bits: palette, alpha, 1-bit and CMYK images by
    Pillow, 16-bit grey PNGs by scaling 0..65535 to the nearest of 0..255.

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
        Refuse folders or archives with more files (archive members).
    max_total_bytes : int, default=4 GiB
        A bound on peak memory: refuse folders or archives holding more bytes
        (uncompressed), and images whose files, output array and the decoding
        of any one of them would take more bytes together (counted from the
        image headers at the bytes per pixel Pillow works with, before
        anything is decoded or allocated).

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
    size = _check_image_size(image_size)
    validate_parameter_constraints(
        _CONSTRAINTS, {"max_members": max_members, "max_total_bytes": max_total_bytes, "grayscale": grayscale},
        caller_name="load_image_folder",
    )
    Image = _import_pillow()
    path = Path(path)
    files = _read_image_files(path, max_members, max_total_bytes)
    entries = _parse_layout(files, path)
    class_names = sorted({entry[1] for entry in entries})
    selected = _select_subset(entries, subset, path)
    images = _decode_images(
        Image, selected, path, size, "L" if grayscale else "RGB", max_total_bytes,
        held=sum(len(blob) for _, blob in files),
    )
    label_of = {name: label for label, name in enumerate(class_names)}
    target = np.array([label_of[class_name] for _, class_name, _, _ in selected], dtype=np.int64)
    data = images.reshape(len(images), math.prod(images.shape[1:]))
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


def _is_hidden(part):
    return part.startswith(".") or part == "__MACOSX"


def _is_image(name):
    hidden = any(_is_hidden(part) for part in PurePosixPath(name).parts)
    return not hidden and name.lower().endswith(IMAGE_SUFFIXES)


def _read_image_files(path, max_members, max_total_bytes):
    """Return ``[(relative_name, bytes)]`` for the image files under ``path``."""
    if path.is_dir():
        return _read_folder(path, Limits(path, max_members, max_total_bytes))
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


def _read_folder(root, limits):
    files = []
    for name, file in _walk(root):
        try:
            info = os.stat(file)  # follows links
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{name} in {root} is a broken symbolic link; remove it or fix its target."
            ) from exc
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(
                f"{name} in {root} is not a regular file (a device, fifo or socket, "
                "maybe through a symbolic link); remove it."
            )
        limits.add(info.st_size)
        files.append((name, Path(file).read_bytes()))
    return files


def _walk(root):
    """Yield ``(relative name, path)`` of the image files under ``root``, following links.

    Hidden folders are not entered. A folder reached a second time would make
    the same images load twice, or, for a loop, forever: refused.
    """
    seen = {os.path.realpath(root)}
    for folder, subfolders, filenames in os.walk(root, onerror=_raise, followlinks=True):
        relative = PurePosixPath(Path(folder).relative_to(root).as_posix())
        kept = []
        for subfolder in subfolders:
            if _is_hidden(subfolder):
                continue
            real = os.path.realpath(os.path.join(folder, subfolder))
            if real in seen:
                raise ValueError(
                    f"{relative / subfolder} in {root} leads to {real}, a folder reached "
                    "more than once (a symbolic link loop, or two links to one folder); "
                    "remove the link."
                )
            seen.add(real)
            kept.append(subfolder)
        subfolders[:] = kept  # os.walk descends only into these
        for filename in filenames:
            name = (relative / filename).as_posix()
            if _is_image(name):
                yield name, os.path.join(folder, filename)


def _raise(error):
    # os.walk ignores unreadable folders unless told otherwise: images would go missing.
    raise error


def _parse_layout(files, path):
    """Return sorted ``[(split or None, class, name, bytes)]``; check the layout.

    Names are taken in their :func:`canonical_name` spelling, so that a class
    folder spelled in NFC and in NFD is one class; a file reached under both
    spellings is refused.
    """
    if not files:
        raise ValueError(f"No PNG or JPEG image found in {path}.")
    unique = UniqueNames(path)
    for name, _ in files:
        unique.add(name)
    files = [(canonical_name(name), blob) for name, blob in files]
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


def _check_image_size(image_size):
    """Return ``image_size`` as ``(height, width)`` (or None); refuse anything else."""
    def positive_int(value):
        return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1

    if image_size is None:
        return None
    if positive_int(image_size):
        return (int(image_size), int(image_size))
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(
        positive_int(value) for value in image_size
    ):
        return (int(image_size[0]), int(image_size[1]))
    raise ValueError(
        "The 'image_size' parameter of load_image_folder must be None, an int >= 1 or a "
        f"(height, width) pair of ints >= 1. Got {image_size!r} instead."
    )


def _decode_images(Image, entries, path, size, mode, max_total_bytes, held):
    """Decode the images into one preallocated uint8 array.

    Memory is counted before it is taken: ``held`` bytes of files already read,
    plus the output array, plus what decoding the next image takes (from its
    header, see :func:`_working_bytes`) must stay within ``max_total_bytes``.
    A size mismatch is reported before decoding.

    Sequential on purpose: on 32x32 JPEGs most of the ~85 us per image is
    Pillow's Python code, which holds the GIL, and two threads measured no
    faster than one.
    """
    color = (3,) if mode == "RGB" else ()  # the last axis of RGB images
    images = None
    for i, entry in enumerate(entries):
        name = entry[2]
        with _open(Image, entry, path) as image:
            shape = (*(size or (image.height, image.width)), *color)
            nbytes = (held + len(entries) * math.prod(shape)
                      + _working_bytes(image, shape, mode))
            if nbytes > max_total_bytes:
                raise too_large(
                    f"{path} (member {name}, one of {len(entries)} images of shape {shape})",
                    nbytes, max_total_bytes, what="take, with the files read, in all")
            if images is None:
                first = name
                images = np.empty((len(entries), *shape), dtype=np.uint8)
            elif shape != images.shape[1:]:
                raise ValueError(
                    f"{name} in {path} has shape {shape}, but {first} has "
                    f"{images.shape[1:]}; pass image_size=(height, width) to resize all images."
                )
            images[i] = _pixels(Image, image, entry, path, size, mode)
    return images


# Rows of a 16-bit image are scaled to 8 bits this many pixels at a time.
_BLOCK_PIXELS = 2**16
# Bytes per pixel of one block's temporaries: the crop (4), its array (4), int64 (8).
_BLOCK_BYTES_PER_PIXEL = 16


def _working_bytes(image, shape, mode):
    """The most bytes :func:`_pixels` holds at once for ``image``, from its header.

    Counts each step at the bytes per pixel Pillow stores (RGB as 4, 16-bit
    grey as 2): the decoded image, its 8-bit copy (a numpy and a Pillow one)
    when 16-bit, the converted image, the resized one, and the array copies.
    Measured: two 3000x3000 16-bit PNGs peak at 87% of the bound as grey, 90% as RGB.
    """
    pixels, out_pixels = image.width * image.height, shape[0] * shape[1]
    target = _stored_bytes_per_pixel(mode)
    nbytes = pixels * _stored_bytes_per_pixel(image.mode)
    current = image.mode
    if current.startswith("I"):
        nbytes += 2 * pixels + min(pixels, _BLOCK_PIXELS) * _BLOCK_BYTES_PER_PIXEL
        current = "L"
    if current != mode:
        nbytes += pixels * target
    if (image.height, image.width) != shape[:2]:
        nbytes += out_pixels * target
    # np.asarray goes through Image.tobytes, which joins its chunks: two copies.
    return nbytes + 2 * out_pixels * (shape[2] if len(shape) == 3 else 1)


def _stored_bytes_per_pixel(mode):
    """Bytes per pixel in Pillow's memory: 1 for 1, L and P, 2 for I;16*, else 4 (RGB too)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _open(Image, entry, path):
    """Open an image lazily: Pillow reads the header, not the pixels."""
    _, _, name, blob = entry
    try:
        # formats= also keeps untrusted bytes away from Pillow's other decoders.
        return Image.open(io.BytesIO(blob), formats=_PILLOW_FORMATS)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        # PIL.UnidentifiedImageError is an OSError.
        raise corrupt_file(f"{path} (member {name})", f"cannot decode the image: {exc}") from exc


def _pixels(Image, image, entry, path, size, mode):
    """Decode ``image`` to a uint8 array of ``mode``, resized to ``size``."""
    name = entry[2]
    try:
        image = _to_8_bits(Image, image, f"{path} (member {name})")
        image = image.convert(mode) if image.mode != mode else image
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        # Truncated-image errors are OSErrors.
        raise corrupt_file(f"{path} (member {name})", f"cannot decode the image: {exc}") from exc


def _to_8_bits(Image, image, source):
    """Scale 16-bit grey images (Pillow modes I;16* and I) to 8 bits.

    Pillow's own convert("L") clips them at 255. 0..65535 maps to the nearest
    of 0..255: round(v / 257), since 65535 = 255 * 257. Done a block of rows
    at a time, so that the int64 temporaries stay small.
    """
    if not image.mode.startswith("I"):
        return image
    out = np.empty((image.height, image.width), np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(image.width, 1))
    for top in range(0, image.height, rows):
        bottom = min(top + rows, image.height)
        deep = np.asarray(image.crop((0, top, image.width, bottom))).astype(np.int64)
        if deep.size and (deep.min() < 0 or deep.max() > 65535):
            raise ValueError(f"{image.mode} pixel values outside 0..65535 in {source}")
        out[top:bottom] = (deep + 128) // 257
    return Image.fromarray(out)


def _describe(path, subset, images, class_names):
    which = f" (subset {subset!r})" if subset else ""
    return (
        f"Images loaded from {path}{which}: {len(images)} images of shape "
        f"{images.shape[1:]}, {len(class_names)} classes: {', '.join(class_names)}."
    )
