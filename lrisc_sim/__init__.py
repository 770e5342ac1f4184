"""lrisc-sim: link-level simulator for wireless image transmission.

The public API (see ``lrisc_sim.api`` and README "Python API"):

* ``sweep(codecs, snr, cbr, channel, dataset, out, ...) -> pandas.DataFrame``: a Monte Carlo sweep, as
  ``lrisc-sim sweep`` (same folder, same resume rules);
* ``transmit(image, codec, snr_db, cbr, channel, ...) -> Transmission``: one image at one point, with metrics and
  the codec's internal maps; ``send(codec, x, cbr, snr_db, channel, ...)`` the same for a tensor batch;
* ``load_codec(spec, ...) -> Codec`` and ``make_channel(spec) -> Channel``;
* ``compare(out, ref, ...) -> pandas.DataFrame``: paired differences to a reference codec, as ``lrisc-sim
  compare``; ``plot(out, labels, formats, diff, ...) -> list of files``: redraw a folder's plots;
* the contracts to implement a codec or a channel: ``Codec`` (``Context``, ``Encoded``, ``Decoded``) and
  ``Channel`` (``Realization``, ``Received``).
"""

__version__ = "0.1.0"

# imported on first use (PEP 562), so that ``lrisc-sim --help`` does not load torch
_EXPORTS = {
    "Channel": "channels.base", "Received": "channels.base", "Realization": "channels.realization",
    "load_codec": "lrisc_sim.api", "make_channel": "lrisc_sim.api", "sweep": "lrisc_sim.api",
    "compare": "lrisc_sim.api", "plot": "lrisc_sim.api",
    "Codec": "lrisc_sim.codec", "Context": "lrisc_sim.codec", "Decoded": "lrisc_sim.codec",
    "Encoded": "lrisc_sim.codec", "SideInfoCharge": "lrisc_sim.codec",
    "ConfigError": "lrisc_sim.sweep_config", "SweepConfig": "lrisc_sim.sweep_config",
    "Transmission": "lrisc_sim.transmission", "send": "lrisc_sim.transmission", "transmit": "lrisc_sim.transmission",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lrisc_sim' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
