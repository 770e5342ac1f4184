"""The channel layer: AWGN, Rayleigh / Rician fading, 3GPP TDL over OFDM.

A channel acts on ``B x k`` complex symbols with a per-image SNR and draws all its randomness from a
``Realization`` (common random numbers: every codec sees the same noise and gains). The contract is
``channels.base.Channel`` (one method, ``gains``); the spec grammar (``awgn``, ``rician:K=4``, ``tdl-a:speed=3``,
plugins) and the registry live in ``channels.registry``.
"""

from channels.awgn import AWGN
from channels.base import Channel, ChannelOutput, Received, equalize, snr_to_n0
from channels.fading import RayleighFading, RicianFading
from channels.power import average_power, complex_to_real, normalize_power, real_to_complex
from channels.realization import Realization
from channels.registry import (CHANNEL_INFO, ChannelInfo, available_channels, channel_spec_help, make_channel,
                               parse_channel_spec)
from channels.tdl import TDLChannel  # imports Sionna only when a TDL channel is built

__all__ = [
    "AWGN", "CHANNEL_INFO", "Channel", "ChannelInfo", "ChannelOutput", "Realization", "Received",
    "RayleighFading", "RicianFading", "TDLChannel", "available_channels", "average_power", "channel_spec_help",
    "complex_to_real", "equalize", "make_channel", "normalize_power", "parse_channel_spec", "real_to_complex",
    "snr_to_n0",
]
