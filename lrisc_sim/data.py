"""Image datasets: the builtin photos, any folder, Kodak; loading with conversion and clear errors.

Images are returned as float32 tensors ``3 x H x W`` in [0, 1] (ARCHITECTURE.md section 3.1). Grayscale, palette, RGBA
(composited on white) and 16-bit files are converted; anything unreadable raises ``DataError`` naming the file.

Folder datasets are lazy: listing one reads only the file names and each image's header (its size), and an
``Item``'s pixels are decoded each time ``item.image`` is read, so a sweep holds only the current batch in memory.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

# scikit-image's sample photos (shipped inside the package, no download): name -> loader attribute
BUILTIN = ("astronaut", "coffee", "chelsea", "rocket", "camera")

KODAK_URL = "https://r0k.us/graphics/kodak/kodak/kodim{:02d}.png"


class DataError(ValueError):
    """A dataset or image problem, with a one-line message saying how to fix it."""


class Item:
    """One image of a dataset: ``id`` (unique, stable: used to seed its channel realizations) and its pixels.

    ``Item(id, image)`` holds a ``3 x H x W`` float32 tensor in [0, 1]; ``Item(id, path=..., hw=(H, W))`` only
    names the file, whose pixels ``image`` decodes on every read (``load_image``) without keeping them. ``hw``
    is the size either way. A pickled item (e.g. in a Ray task) carries its pixels, so a worker without the file
    gets the same image.
    """

    __slots__ = ("id", "path", "hw", "_image")

    def __init__(self, id: str, image: torch.Tensor | None = None, *, path: str | os.PathLike | None = None,
                 hw: tuple[int, int] | None = None):
        if (image is None) == (path is None):
            raise ValueError("Item needs its pixels (image) or its file (path=..., hw=...), not both or neither")
        self.id = id
        self._image = image
        self.path = None if path is None else Path(path)
        if image is not None:
            self.hw = (int(image.shape[-2]), int(image.shape[-1]))
        elif hw is None:
            raise ValueError(f"Item {id}: give hw=(H, W) with path (image_size reads it from the header)")
        else:
            self.hw = (int(hw[0]), int(hw[1]))

    @property
    def image(self) -> torch.Tensor:
        """``3 x H x W`` float32 in [0, 1]: the held tensor, or the file decoded now (``DataError`` if it fails)."""
        if self._image is not None:
            return self._image
        im = load_image(self.path)
        if tuple(im.shape[-2:]) != self.hw:
            raise DataError(f"{self.path}: now {im.shape[-2]}x{im.shape[-1]} px, {self.hw[0]}x{self.hw[1]} when the "
                            "dataset was listed; do not change the images during a run")
        return im

    def __getstate__(self) -> dict:
        return {"id": self.id, "image": self.image}

    def __setstate__(self, state: dict) -> None:
        self.id, self._image, self.path = state["id"], state["image"], None
        self.hw = (int(self._image.shape[-2]), int(self._image.shape[-1]))

    def __repr__(self) -> str:
        where = f"path={str(self.path)!r}" if self.path is not None else "in memory"
        return f"Item(id={self.id!r}, hw={self.hw}, {where})"


def to_float_rgb(arr: np.ndarray, mode: str | None = None, name: str = "image") -> np.ndarray:
    """Convert an array from any common layout/depth to ``H x W x 3`` float32 in [0, 1]."""
    a = np.asarray(arr)
    if a.dtype == np.bool_:
        a = a.astype(np.float32)
    elif a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16 or (mode is not None and mode.startswith("I;16")):
        a = a.astype(np.float32) / 65535.0
    elif a.dtype in (np.int32, np.int64, np.uint32):  # PIL mode "I": 16-bit data stored in int32
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError(f"{name}: integer pixels in [{a.min()}, {a.max()}], outside 0..65535; save it as 8- or "
                            "16-bit PNG")
        a = a.astype(np.float32) / (65535.0 if a.max(initial=0) > 255 else 255.0)
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        a = _float_scale(a, name)
    else:
        raise DataError(f"{name}: unsupported pixel type {a.dtype}; convert it to 8- or 16-bit PNG")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 2:  # gray + alpha
        g, al = a[:, :, :1], a[:, :, 1:]
        a = np.repeat(g * al + (1 - al), 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:  # RGBA composited on white
        rgb, al = a[:, :, :3], a[:, :, 3:]
        a = rgb * al + (1 - al)
    elif not (a.ndim == 3 and a.shape[2] == 3):
        raise DataError(f"{name}: unsupported image shape {a.shape}; expected H x W, H x W x 3 or H x W x 4")
    if not np.isfinite(a).all():
        raise DataError(f"{name}: image contains NaN or infinite values")
    return np.clip(a, 0.0, 1.0)


#: tolerance of the float-pixel rule (:func:`_float_scale`): under half an 8-bit level
FLOAT_TOLERANCE = 1.0 / 512


def _float_scale(a: np.ndarray, name: str) -> np.ndarray:
    """Float pixels to [0, 1] by one stated rule (ARCHITECTURE.md 3.1):

    * all values in [0, 1] (within :data:`FLOAT_TOLERANCE`): used as they are (the tolerance clipped);
    * all in [0, 255] with a maximum above 2: an 8-bit scale, divided by 255;
    * anything else (negative values, values above 255, or a maximum in (1, 2], which could be either scale):
      refused with a ``DataError`` naming the file and its range, never clipped to a black or white image.
    NaN/inf are left for the caller's check.
    """
    fin = a[np.isfinite(a)]
    if fin.size == 0:
        return a
    lo, hi = float(fin.min()), float(fin.max())
    t = FLOAT_TOLERANCE
    if lo >= -t and hi <= 1 + t:
        return a
    if lo >= -t and 2 < hi <= 255 + 255 * t:
        return a / 255.0
    raise DataError(f"{name}: float pixels in [{lo:.4g}, {hi:.4g}], neither in [0, 1] nor an 8-bit scale "
                    "(0..255, maximum above 2); rescale the image to [0, 1] (e.g. (x - min) / (max - min)) and "
                    "save it again")


#: largest image accepted, in pixels (H x W), unless ``$LRISC_SIM_MAX_PIXELS`` says otherwise; checked from the
#: header before anything is decoded (a decoded image costs 12 bytes per pixel as float32 RGB)
MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "LRISC_SIM_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit per image: ``$LRISC_SIM_MAX_PIXELS`` or :data:`MAX_PIXELS`."""
    v = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not v:
        return MAX_PIXELS
    try:
        n = int(float(v))
    except ValueError:
        n = 0
    if n < 1:
        raise DataError(f"{MAX_PIXELS_ENV}={v!r}: give the largest image size to accept, in pixels (e.g. 40000000)")
    return n


def _display(p: Path) -> str:
    """``p`` as text; bytes that are not UTF-8 shown as ``\\xNN``."""
    return os.fsencode(p).decode("utf-8", "backslashreplace")


def check_utf8_name(p: Path) -> None:
    """``DataError`` when the path ``p`` is not valid UTF-8 (result tables, ids and messages are UTF-8 text)."""
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{_display(p)}: file name is not valid UTF-8; rename it (e.g. with only ASCII letters, "
                        "digits, '-' and '_')") from None


@contextmanager
def _open_image(p: Path):
    """``PIL.Image.open(p)`` (header read, pixels not yet decoded) whose failures, in the ``with`` body too, become
    one-line ``DataError``s naming the file and the fix."""
    from PIL import Image, UnidentifiedImageError

    check_utf8_name(p)
    if not p.is_file():
        raise DataError(f"{p}: no such image file")
    try:
        with Image.open(p) as im:
            w, h = im.size
            limit = max_pixels()
            if w * h > limit:
                raise DataError(f"{p}: {w}x{h} = {w * h / 1e6:.1f} Mpx, over the limit of {limit / 1e6:g} Mpx per "
                                f"image (decoded it needs about {12 * w * h / 2**30:.1f} GiB); downscale or crop it, "
                                f"or raise the limit with {MAX_PIXELS_ENV}=PIXELS")
            yield im
    except UnidentifiedImageError:
        raise DataError(f"{p}: not a readable image (unknown or corrupt format); re-save it as PNG") from None
    except Image.DecompressionBombError as e:  # a header claiming a huge size: refused before decoding
        n = "".join(c for c in str(e).split("pixels")[0] if c.isdigit()) or "too many"
        raise DataError(f"{p}: refused as a possible decompression bomb: its header claims {n} pixels, over "
                        f"Pillow's limit of {2 * Image.MAX_IMAGE_PIXELS}; downscale the image") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read image ({e}); re-save it as PNG") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header, without decoding the pixels; ``DataError`` as ``load_image``
    for a missing, unreadable, empty or decompression-bomb file."""
    p = Path(path)
    with _open_image(p) as im:
        w, h = im.size
    if min(h, w) < 1:
        raise DataError(f"{p}: empty image")
    return h, w


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as ``3 x H x W`` float32 in [0, 1]; raise ``DataError`` naming the file on failure."""
    p = Path(path)
    with _open_image(p) as im:
        im.load()
        mode = im.mode
        if mode == "P" or mode == "PA":
            im = im.convert("RGBA")
            mode = "RGBA"
        elif mode == "CMYK" or mode == "YCbCr" or mode == "LAB" or mode == "HSV":
            im = im.convert("RGB")
            mode = "RGB"
        elif mode == "1":
            im = im.convert("L")
            mode = "L"
        arr = np.array(im)
    if arr.size == 0 or min(arr.shape[:2]) < 1:
        raise DataError(f"{p}: empty image")
    return torch.from_numpy(to_float_rgb(arr, mode, str(p)).transpose(2, 0, 1).copy())


def image_paths(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files of a folder (recursive, so a COCO folder with sub-folders works too)."""
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{d}: no such folder; give a folder of images, 'builtin' or 'kodak'")
    files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for p in files:
        check_utf8_name(p)
    if not files:
        raise DataError(f"{d}: no image files found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def builtin_images() -> list[Item]:
    """Photos shipped inside scikit-image (no download): astronaut, coffee, chelsea, rocket, camera (grayscale, converted)."""
    from skimage import data as skdata

    items = []
    for name in BUILTIN:
        arr = getattr(skdata, name)()
        items.append(Item(name, torch.from_numpy(to_float_rgb(arr, None, name).transpose(2, 0, 1).copy())))
    return items


CACHE_ENV = "LRISC_SIM_CACHE"


def cache_dir() -> Path:
    """The project's one cache folder (downloads, converted weights, encodings, training states):
    ``$LRISC_SIM_CACHE`` with ``~`` expanded, or ``~/.cache/lrisc-sim`` when it is unset or empty (not created)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lrisc-sim"


# First 16 hex digits of the sha256 of each Kodak image's decoded 8-bit RGB pixels (row-major H x W x 3).
# Pixels, not file bytes, so that mirrors that re-compress the PNGs still verify.
KODAK_PIXEL_SHA256: dict[str, str] = {
    "kodim01.png": "a002107433535944",
    "kodim02.png": "ae5a495df4ec40e0",
    "kodim03.png": "234e61f585503f2a",
    "kodim04.png": "e88e788fca00e6c7",
    "kodim05.png": "ed3d1ee770909d3b",
    "kodim06.png": "7f45158999fa297d",
    "kodim07.png": "4e3664bf6fe865b4",
    "kodim08.png": "889c3740e4ed54ca",
    "kodim09.png": "f8453140e63a4230",
    "kodim10.png": "fabe11b5c4f02839",
    "kodim11.png": "ab4dd9bf8431e717",
    "kodim12.png": "f412db2168e59994",
    "kodim13.png": "875703d56fb9396f",
    "kodim14.png": "2bd5029ee75ac169",
    "kodim15.png": "b5353e7511277009",
    "kodim16.png": "ed21745fd32fce95",
    "kodim17.png": "566bc866664e9b06",
    "kodim18.png": "3475af71066f3ca8",
    "kodim19.png": "7956408ef24222d3",
    "kodim20.png": "666ce8f2db5566a1",
    "kodim21.png": "2d6902daf7c4486b",
    "kodim22.png": "f430842120c108b6",
    "kodim23.png": "81992a83592267e6",
    "kodim24.png": "e3e3ccc3e795b82a",
}


def kodak_images(root: str | os.PathLike | None = None, limit: int | None = None) -> list[Item]:
    """The 24 Kodak images (lazy, as ``folder_images``): from ``root`` (or ``$LRISC_SIM_KODAK``) if given, else
    from the cache, downloading them (pixel checksums verified) when missing; ``limit`` keeps the first N."""
    where = "the Kodak folder" if root else "LRISC_SIM_KODAK"
    root = root or os.environ.get("LRISC_SIM_KODAK")
    if root is not None:
        verify_kodak(Path(root), where)
        return folder_images(root, limit)
    d = cache_dir() / "kodak"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(1, 25):
        f = d / f"kodim{i:02d}.png"
        if f.is_file() and _sha_ok(f):
            continue
        try:
            tmp = f.with_suffix(".part")
            urllib.request.urlretrieve(KODAK_URL.format(i), tmp)  # noqa: S310 (fixed https URL)
        except OSError as e:
            raise DataError(f"cannot download Kodak ({e}); give a local copy as the dataset (a folder path) or in "
                            "$LRISC_SIM_KODAK") from None
        tmp.replace(f)
        if not _sha_ok(f):
            f.unlink()
            raise DataError(f"Kodak file {f.name} failed its checksum; give a local copy as the dataset (a folder "
                            "path) or in $LRISC_SIM_KODAK")
    return folder_images(d, limit)


_KODAK_VERIFIED: set[tuple] = set()  # (folder, (name, size, mtime) of each file) that passed verify_kodak


def verify_kodak(folder: Path, where: str = "LRISC_SIM_KODAK") -> None:
    """``DataError`` unless ``folder`` holds exactly the 24 Kodak images (``kodim01.png`` .. ``kodim24.png``, no
    other image) with the known pixels (:data:`KODAK_PIXEL_SHA256`, as the download is checked); ``where`` names
    the setting in the message. A folder that passed is not decoded again in this process while its files keep
    their size and modification time."""
    folder = Path(folder)
    fix = (f"point {where} at the 24 Kodak PNGs, unset it to download them, or give the folder itself as the "
           f"dataset (--dataset {_display(folder)}) to run on its images under their own name")
    if not folder.is_dir():
        raise DataError(f"{where}={_display(folder)}: no such folder; {fix}")
    try:
        files = image_paths(folder)
    except DataError:
        files = []
    st = []
    for f in files:
        try:
            s = f.stat()
        except OSError:
            continue
        st.append((f.relative_to(folder).as_posix(), s.st_size, s.st_mtime_ns))
    key = (str(folder.resolve()), tuple(st))
    if key in _KODAK_VERIFIED:
        return
    names = [n for n, _, _ in st]
    other = [n for n in names if n not in KODAK_PIXEL_SHA256]
    missing = [n for n in KODAK_PIXEL_SHA256 if n not in names]
    problems = []
    if missing:
        problems.append(f"{len(missing)} of the 24 files missing ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''})")
    if other:
        problems.append(f"{len(other)} other image(s) ({', '.join(other[:3])}{', ...' if len(other) > 3 else ''})")
    if not problems:
        wrong = [n for n in names if not _sha_ok(folder / n)]
        if wrong:
            problems.append(f"{', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''} "
                            f"{'has' if len(wrong) == 1 else 'have'} other pixels than Kodak's")
    if problems:
        raise DataError(f"{where}={_display(folder)} is not the Kodak set: {'; '.join(problems)}; {fix}")
    _KODAK_VERIFIED.add(key)


def _sha_ok(f: Path) -> bool:
    """True if the file decodes to the known Kodak pixels."""
    from PIL import Image

    want = KODAK_PIXEL_SHA256.get(f.name)
    try:
        with Image.open(f) as im:
            if im.size not in ((768, 512), (512, 768)):  # Kodak's sizes: nothing else is decoded
                return False
            a = np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError):
        return False
    return want is not None and hashlib.sha256(a.tobytes()).hexdigest()[:16] == want


def image_ids(root: Path, paths: Sequence[Path]) -> list[str]:
    """Unique ids of the image files ``paths`` under ``root``: the relative path without its suffix, or with it
    for files that share a stem (``x.png`` and ``x.jpg`` are ids ``x.png`` and ``x.jpg``, so that they get their
    own channel realizations and result rows)."""
    stems = [p.relative_to(root).with_suffix("").as_posix() for p in paths]
    count: dict[str, int] = {}
    for s in stems:
        count[s] = count.get(s, 0) + 1
    ids = [s if count[s] == 1 else p.relative_to(root).as_posix() for s, p in zip(stems, paths)]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"{root}: files {', '.join(dup)} would get the same image id; rename one of them")
    return ids


def folder_images(folder: str | os.PathLike, limit: int | None = None) -> list[Item]:
    """The images of a folder as lazy items (file and size; pixels decoded when ``item.image`` is read). Ids are
    the paths relative to the folder, without suffix unless two files share a stem (:func:`image_ids`, over the
    whole folder); ``limit`` keeps the first N files, and only their headers are read."""
    root = Path(folder)
    paths = image_paths(root)
    ids = image_ids(root, paths)
    return [Item(i, path=p, hw=image_size(p)) for i, p in list(zip(ids, paths))[: limit or None]]


def load_dataset(spec: str, limit: int | None = None) -> list[Item]:
    """``builtin``, ``kodak`` or a folder path (folders and Kodak lazy, see :func:`folder_images`); ``limit`` keeps
    the first N images."""
    if spec == "builtin":
        items = builtin_images()
    elif spec == "kodak":
        return kodak_images(limit=limit)
    else:
        p = Path(spec)
        check_utf8_name(p)
        if p.is_file():
            items = [Item(p.stem, load_image(p))]
        elif p.is_dir():
            return folder_images(p, limit)
        else:
            raise DataError(f"dataset '{spec}' not found: use 'builtin', 'kodak', a folder or an image file")
    return items[:limit] if limit else items


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Reflect-pad ``B x 3 x H x W`` (bottom/right) so that H and W are multiples of ``m``."""
    if m <= 1:
        return x
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)


def group_by_size(items: Sequence[Item], batch_size: int) -> Iterator[list[Item]]:
    """Batches of at most ``batch_size`` images of equal size (``item.hw``; no pixels are decoded): the sizes in
    the order of their first image, each size's images in dataset order."""
    groups: dict[tuple[int, int], list[Item]] = {}
    for it in items:
        groups.setdefault(tuple(it.hw), []).append(it)
    for group in groups.values():
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size]


class RandomCrops(torch.utils.data.IterableDataset):
    """Endless random ``size x size`` crops (with random horizontal flips) from a folder of images.

    Images smaller than the crop are upscaled first. Used by the training commands. Yields ``3 x s x s``.
    ``paths`` (optional) replaces the images found in ``folder``.
    """

    def __init__(self, folder: str | os.PathLike, size: int, seed: int = 0, max_side: int | None = None,
                 paths: list[Path] | None = None):
        self.images = [load_image(p) for p in (paths if paths is not None else image_paths(folder))]
        if max_side:
            self.images = [_shrink(im, max_side) for im in self.images]
        self.size = size
        self.seed = seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        s = self.size
        while True:
            im = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
            yield random_crop(at_least(im, s), s, g)

    def batch(self, n: int, it: Iterator[torch.Tensor] | None = None) -> torch.Tensor:
        """A ``n x 3 x s x s`` batch (from ``it``, an iterator over this dataset, or a fresh one)."""
        it = it or iter(self)
        return torch.stack([next(it) for _ in range(n)])


def at_least(im: torch.Tensor, s: int) -> torch.Tensor:
    """``3 x H x W`` upscaled (bilinear) so that both sides are at least ``s``; unchanged if they are."""
    _, h, w = im.shape
    if h >= s and w >= s:
        return im
    f = s / min(h, w)
    return torch.nn.functional.interpolate(im[None], scale_factor=f * 1.01, mode="bilinear",
                                           align_corners=False)[0].clamp(0, 1)


def random_crop(im: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """A random ``3 x s x s`` crop of ``im`` (sides >= s), flipped horizontally with probability 1/2."""
    _, h, w = im.shape
    i = int(torch.randint(h - s + 1, (1,), generator=g))
    j = int(torch.randint(w - s + 1, (1,), generator=g))
    c = im[:, i: i + s, j: j + s]
    return c.flip(-1) if torch.rand(1, generator=g) < 0.5 else c


class StreamingCrops(torch.utils.data.IterableDataset):
    """Endless random ``size x size`` crops read lazily from image files (a COCO-sized folder never sits in memory).

    Each DataLoader worker of each rank reads its own shard of the files (file ``i`` belongs to worker
    ``i mod (workers x ranks)``), in a random order from a generator seeded by (seed, rank, worker); one image is
    decoded at a time and ``crops_per_image`` random crops (with horizontal flips) are taken from it. Images
    smaller than the crop are upscaled. Yields ``3 x s x s``. Use through :func:`streaming_loader`.
    """

    def __init__(self, paths: list[Path], size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 crops_per_image: int = 4):
        if not paths:
            raise DataError("no training images to stream")
        self.paths = list(paths)
        self.size = size
        self.seed = seed
        self.rank, self.world = rank, world
        self.crops_per_image = crops_per_image

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        shard_id, shards = self.rank * nw + wid, self.world * nw
        mine = self.paths[shard_id::shards] or self.paths  # fewer files than shards: everyone reads all
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + shard_id)
        s = self.size
        while True:
            for k in torch.randperm(len(mine), generator=g).tolist():
                im = at_least(load_image(mine[k]), s)
                for _ in range(self.crops_per_image):
                    yield random_crop(im, s, g)


def streaming_loader(paths: list[Path], size: int, batch: int, workers: int, seed: int = 0, rank: int = 0,
                     world: int = 1) -> Iterator[torch.Tensor]:
    """Endless ``batch x 3 x size x size`` batches of :class:`StreamingCrops` read by ``workers`` DataLoader
    processes (``workers`` >= 1); each rank of a distributed run streams its own shard of the files."""
    ds = StreamingCrops(paths, size, seed=seed, rank=rank, world=world)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=True,
                                         prefetch_factor=4)
    return iter(loader)


def _shrink(im: torch.Tensor, max_side: int) -> torch.Tensor:
    h, w = im.shape[-2:]
    if max(h, w) <= max_side:
        return im
    f = max_side / max(h, w)
    return torch.nn.functional.interpolate(im[None], scale_factor=f, mode="area")[0]
