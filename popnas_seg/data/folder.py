"""Read a user's data set: `images/` and `masks/` folders whose files pair up by name stem.

Every problem a user can make with their files becomes a `UserError` that names the file and the fix,
because a data problem found deep inside a multi-hour search (or never found: a silently misread mask)
is far more expensive than one refused at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from popnas_seg.data.limits import check_image_shape
from popnas_seg.errors import UserError

SUPPORTED_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
_SHOW = 5  # how many offending names an error lists


def read_folder(
    path: str | Path,
    classes_count: int,
    class_labels_remapping: Mapping[int, int] | None = None,
    samples: int | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Read and validate `path/images` and `path/masks`.

    Returns (images: float32 [H,W,C] in [0,1] for integer files (uint8 /255, uint16 /65535) and float files
    as stored; masks: int32 [H,W] class indices after `class_labels_remapping`; names: the shared stems),
    sorted by name. `samples` keeps the first `samples` names (sorted), so a subset is reproducible.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist (dataset.path)")
    image_files = _list_files(root / "images", "images")
    mask_files = _list_files(root / "masks", "masks")
    if not image_files:
        raise UserError(f"no images found in {root / 'images'} (supported: {', '.join(SUPPORTED_SUFFIXES)})")

    lonely_images = sorted(set(image_files) - set(mask_files))
    lonely_masks = sorted(set(mask_files) - set(image_files))
    if lonely_images:
        raise UserError(
            f"{len(lonely_images)} image(s) in {root / 'images'} have no mask with the same name in "
            f"{root / 'masks'}: {_few(lonely_images)}"
        )
    if lonely_masks:
        raise UserError(
            f"{len(lonely_masks)} mask(s) in {root / 'masks'} have no image with the same name in "
            f"{root / 'images'}: {_few(lonely_masks)}"
        )

    names = sorted(image_files)
    if samples is not None:
        if samples < 1:
            raise UserError(f"dataset.samples must be at least 1, got {samples}")
        names = names[:samples]

    lut = _remapping_table(class_labels_remapping)
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    bad_labels: dict[int, list[str]] = {}
    for name in names:
        image_file, mask_file = image_files[name], mask_files[name]
        image = _as_image(_read_array(image_file, as_mask=False), image_file)
        mask = _as_mask(_read_array(mask_file, as_mask=True), mask_file)
        if image.shape[:2] != mask.shape:
            raise UserError(
                f"size mismatch: image {image_file} is {image.shape[0]}x{image.shape[1]} but mask "
                f"{mask_file} is {mask.shape[0]}x{mask.shape[1]}; an image and its mask must have the same size"
            )
        if images and image.shape[2] != images[0].shape[2]:
            raise UserError(
                f"image {image_file} has {image.shape[2]} channel(s) but {image_files[names[0]]} has "
                f"{images[0].shape[2]}; all images must have the same number of channels"
            )
        mask = _remap(mask, lut)
        for label in np.unique(mask[mask >= classes_count]).tolist():
            bad_labels.setdefault(int(label), []).append(mask_file.name)
        images.append(image)
        masks.append(mask)

    if bad_labels:
        detail = "; ".join(f"label {lab} in {_few(files)}" for lab, files in sorted(bad_labels.items()))
        what = "after class_labels_remapping " if class_labels_remapping else ""
        top = max(bad_labels)
        target = 1 if classes_count >= 2 else 0  # 0/255 masks: 255 is the foreground, class 1
        raise UserError(
            f"masks hold labels >= classes_count={classes_count} {what}({detail}). Labels must be "
            f"0..{classes_count - 1}: map them with dataset.class_labels_remapping, e.g. "
            f'{{"{top}": {target}}} for 0/{top} masks whose {top} is the foreground, or map them to '
            f"dataset.ignore_class to leave those pixels out of the loss; raise dataset.classes_count only if "
            f"0..{top} are all real classes"
        )
    return images, masks, names


def read_image(file: str | Path) -> np.ndarray:
    """One image file as training reads it: channels-last float32, integer files scaled by bit depth.

    `predict` uses it so new images get exactly the training preprocessing (then per-image normalisation).
    """
    path = Path(file)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UserError(f"unsupported image file {path}: use {', '.join(SUPPORTED_SUFFIXES)}")
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    return _as_image(_read_array(path, as_mask=False), path)


def remap_labels(mask: np.ndarray, remapping: Mapping[int, int] | None) -> np.ndarray:
    """Apply `{old: new}` to a mask of class indices; labels not in the mapping are kept."""
    return _remap(np.asarray(mask).astype(np.int32), _remapping_table(remapping))


def _few(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _list_files(folder: Path, kind: str) -> dict[str, Path]:
    """Stem -> file, for the supported files of one folder (hidden files are ignored)."""
    if not folder.is_dir():
        raise UserError(f"missing folder {folder}: a dataset folder needs images/ and masks/ with matching file names")
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        if entry.exists() and not entry.is_file():
            raise UserError(
                f"{entry} in {kind}/ is not a regular file (a FIFO, socket or device); reading it "
                f"would block or never end: remove it"
            )
        if entry.is_symlink() and not entry.exists():  # is_dir() is False for a looping or dangling link
            from popnas_seg.pathcheck import not_a_folder_reason

            raise UserError(f"{entry} in {kind}/ {not_a_folder_reason(entry)}; remove it or point it at a file")
        suffix = entry.suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            raise UserError(
                f"unsupported file type {entry} in {kind}/: use {', '.join(SUPPORTED_SUFFIXES)} "
                f"(masks must be lossless, so no JPEG)"
            )
        if entry.stem in found:
            raise UserError(
                f"two {kind} files share the name {entry.stem!r}: {found[entry.stem].name} and {entry.name}; "
                f"keep one so that the image/mask pairing is unambiguous"
            )
        found[entry.stem] = entry
    return found


def _read_array(file: Path, as_mask: bool) -> np.ndarray:
    """Decode one file to a numpy array, turning every decoding failure into a UserError naming the file."""
    suffix = file.suffix.lower()
    if not file.is_file():  # a FIFO or a device would block the read forever
        raise UserError(
            f"{file} is not a regular file (a FIFO, socket or device?); image and mask files must be plain files"
        )
    try:
        if suffix == ".npy":
            with open(file, "rb") as handle:  # the header first: the pixel limit before any allocation
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape = read_header(handle)[0]
            check_image_shape(shape, file)
            return np.load(file, allow_pickle=False)
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(file) as tif:
                check_image_shape(tuple(tif.series[0].shape), file)
                return np.asarray(tif.asarray())
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # Pillow's own bomb check off: ours below is the one for every format
        with Image.open(file) as opened:
            check_image_shape((opened.size[1], opened.size[0]), file)
            opened.load()
            img: Image.Image = opened
            if img.mode in ("P", "PA"):
                if as_mask:  # palette indices are the class labels (VOC-style masks)
                    indices = np.asarray(img)
                    return indices[..., 0] if indices.ndim == 3 else indices
                img = img.convert("RGB")
            elif img.mode == "LA":
                img = img.convert("L")
            elif img.mode == "RGBA":
                img = img.convert("RGB")  # alpha is transparency, not data
            elif img.mode == "1":
                img = img.convert("L")
                return (np.asarray(img) > 0).astype(np.uint8)
            return np.asarray(img)
    except UserError:
        raise
    except Exception as exc:  # Pillow, tifffile and numpy raise many types for corrupt files
        raise UserError(f"cannot read {file}: {type(exc).__name__}: {exc}") from exc


def _as_image(array: np.ndarray, file: Path) -> np.ndarray:
    """Channels-last float32; integer files are scaled to [0,1] by their bit depth."""
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        if array.shape[-1] > 4 and array.shape[0] <= 4:
            array = np.moveaxis(array, 0, -1)  # TIFF/NPY stored channels-first
    else:
        raise UserError(f"image {file} has shape {array.shape}; expected [H,W] or [H,W,C]")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise UserError(f"image {file} is empty (shape {array.shape})")

    if array.dtype == np.bool_:
        out = array.astype(np.float32)
    elif array.dtype == np.uint8:
        out = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        out = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 65535:
            raise UserError(f"image {file} has integer values in [{lo}, {hi}]; save it as uint8, uint16 or float")
        out = array.astype(np.float32) / (255.0 if array.dtype.itemsize == 1 else 65535.0)
    elif np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float32)
        if not np.isfinite(out).all():
            raise UserError(f"image {file} contains NaN or infinite values")
    else:
        raise UserError(f"image {file} has unsupported data type {array.dtype}")
    return np.ascontiguousarray(out)


def _as_mask(array: np.ndarray, file: Path) -> np.ndarray:
    """A single-channel int32 mask; an RGB(A) mask whose colour channels are equal is reduced to one."""
    if array.ndim == 3:
        if (
            array.shape[-1] == 1
            or array.shape[-1] in (3, 4)
            and all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, 3))
        ):
            array = array[..., 0]
        else:
            raise UserError(
                f"mask {file} has {array.shape[-1]} channels with different values; a mask must hold one "
                f"class index per pixel (a single-channel or palette PNG, or a 2-D TIFF/NPY)"
            )
    elif array.ndim != 2:
        raise UserError(f"mask {file} has shape {array.shape}; expected [H,W] class indices")

    if array.dtype == np.bool_:
        return array.astype(np.int32)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise UserError(f"mask {file} holds non-integer values; masks must hold class indices 0, 1, 2, ...")
    elif not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"mask {file} has unsupported data type {array.dtype}")
    if array.size and array.min() < 0:
        raise UserError(f"mask {file} holds negative labels ({int(array.min())}); class indices start at 0")
    if array.size and array.max() > np.iinfo(np.int32).max:
        raise UserError(f"mask {file} holds labels too large to be class indices ({array.max()})")
    return np.ascontiguousarray(array.astype(np.int32))


def _remapping_table(remapping: Mapping[int, int] | None) -> dict[int, int]:
    table = {int(k): int(v) for k, v in (remapping or {}).items()}
    for old, new in table.items():
        if old < 0 or new < 0:
            raise UserError(f"class_labels_remapping {old} -> {new}: labels must be >= 0")
    return table


def _remap(mask: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """Simultaneous remapping (a swap {1: 2, 2: 1} works), via a lookup over the labels present."""
    if not table:
        return mask
    labels, inverse = np.unique(mask, return_inverse=True)
    mapped = np.array([table.get(int(v), int(v)) for v in labels], dtype=np.int32)
    return mapped[inverse].reshape(mask.shape)
