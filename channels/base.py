"""The channel interface: y = h s + n with per-image SNR, and the receiver's view of it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from channels.realization import Realization

#: Largest tensor (bytes) a built-in channel allocates for one batch; larger requests are refused before allocation
#: with a one-line :class:`ChannelError` naming the option or flag that sets the size (4 GiB).
MAX_CHANNEL_BYTES = 4 * 2**30


class ChannelError(ValueError):
    """A channel that broke its contract (gains of the wrong shape, non-finite gains, noise variance or received
    symbols), failed, or would allocate more than :data:`MAX_CHANNEL_BYTES`; the message names the channel and
    the fix. The engine passes it through unchanged and blames the channel, not the codec."""


def channel_label(ch: Channel) -> str:
    """How messages name a channel: its spec (``name``), or its class path when it kept the default name."""
    name = getattr(ch, "name", "channel")
    return name if name != "channel" else f"{type(ch).__module__}:{type(ch).__qualname__}"


def check_alloc(channel: str, what: str, nbytes: float, fix: str) -> None:
    """Refuse, before allocating, a tensor of ``nbytes`` above :data:`MAX_CHANNEL_BYTES` (one-line
    :class:`ChannelError` naming ``channel``, ``what`` is allocated and the ``fix``)."""
    if nbytes > MAX_CHANNEL_BYTES:
        raise ChannelError(f"channel '{channel}' would allocate {nbytes / 2**30:.3g} GiB for {what}, over the limit "
                           f"of {MAX_CHANNEL_BYTES / 2**30:g} GiB; {fix}")


def check_gains(ch: Channel, h: object, b: int, k: int) -> torch.Tensor:
    """The gains ``h`` a channel's ``gains(realization, k)`` returned, checked: a ``B x k`` complex tensor of finite
    values (one-line :class:`ChannelError` naming the channel otherwise). Only reads ``h``."""
    name = channel_label(ch)
    if not isinstance(h, torch.Tensor):
        raise ChannelError(f"channel '{name}' returned gains of type {type(h).__name__}, expected a B x k complex "
                           f"tensor ({b} x {k})")
    if tuple(h.shape) != (b, k):
        shape = " x ".join(map(str, h.shape)) or "a scalar"
        raise ChannelError(f"channel '{name}' returned gains of shape {shape}, expected {b} x {k} (B images x k "
                           "symbols); gains(realization, k) must return one gain per symbol of each image")
    if not bool(torch.isfinite(h).all()):
        bad = int((~torch.isfinite(h)).any(dim=1).sum()) if h.dim() == 2 else b
        raise ChannelError(f"channel '{name}' returned non-finite (NaN/inf) gains for {bad} of {b} image(s); the "
                           "channel, not the codec, is at fault: check its options")
    return h if torch.is_complex(h) else h.to(torch.complex64)


def snr_to_n0(snr_db: torch.Tensor | float) -> torch.Tensor:
    """N0 = 10^(-SNR/10): SNR is Es/N0 in dB per complex symbol with P = 1 (ARCHITECTURE.md section 3.3)."""
    snr = torch.as_tensor(snr_db, dtype=torch.float32)
    return torch.pow(10.0, -snr / 10.0)


@dataclass
class ChannelOutput:
    """What a channel returns for a batch.

    y : B x k complex64, received symbols.
    h : B x k complex64, the gain each symbol saw (ones for AWGN); the channel state.
    n0 : B float32, noise variance per complex symbol, noise ~ CN(0, N0).
    snr_db : B float32, the SNR each image was sent at.
    """

    y: torch.Tensor
    h: torch.Tensor
    n0: torch.Tensor
    snr_db: torch.Tensor


@dataclass
class Received:
    """What a codec's decoder is given: equalised symbols plus the channel state (perfect CSI).

    s_hat : B x k complex64, equalised symbols (MMSE or ZF).
    noise_var : B x k float32, variance of the effective noise on s_hat about its (scaled) mean, for LLRs.
    gain : B x k float32, E[s_hat | s] / s (1 for ZF, |h|^2/(|h|^2+N0) for MMSE); unbiased = s_hat / gain.
    raw : the ChannelOutput (y, h, N0, SNR).
    """

    s_hat: torch.Tensor
    noise_var: torch.Tensor
    gain: torch.Tensor
    raw: ChannelOutput

    @property
    def snr_db(self) -> torch.Tensor:
        return self.raw.snr_db

    @property
    def n0(self) -> torch.Tensor:
        return self.raw.n0


@dataclass(frozen=True)
class PilotStructure:
    """How pilot symbols can learn a channel's gains (``channels.pilots``), declared by the channel.

    kind : ``"block"`` (one gain per coherence block of ``coherence`` channel uses; None: one per image),
        ``"ofdm"`` (a resource grid of ``fft_size`` subcarriers, channel use i on subcarrier i mod F of OFDM
        symbol i div F; ``freq_cov()`` gives the F x F complex128 frequency covariance for LMMSE) or
        ``"interpolate"`` (gains
        that change from use to use: pilots every few uses, estimates interpolated; the default, e.g. a plugin).
    """

    kind: str = "interpolate"
    coherence: int | None = None
    fft_size: int | None = None
    freq_cov: Callable[[], torch.Tensor] | None = None


class Channel(ABC):
    """A channel acting on complex symbols.

    Input: ``s`` B x k complex64 (unit average power per image), ``snr_db`` B float32 (or a scalar),
    ``realization`` the common random numbers of the batch. Output: a ``ChannelOutput``.

    ``name`` is the canonical channel spec (``make_channel(ch.name)`` rebuilds the same channel).
    Implementations draw all randomness from ``realization`` (noise from stream "noise", scaled by sqrt(N0)) so
    that two codecs sending k1 <= k2 symbols see the same first k1 noise samples and gains.
    """

    name: str = "channel"

    @abstractmethod
    def gains(self, realization: Realization, k: int) -> torch.Tensor:
        """B x k complex64 gains h with E|h|^2 = 1 (ones for AWGN)."""

    def __call__(self, s: torch.Tensor, snr_db: torch.Tensor | float, realization: Realization) -> ChannelOutput:
        if not torch.is_complex(s) or s.dim() != 2:
            raise ValueError(f"channel input must be a B x k complex tensor, got {tuple(s.shape)} {s.dtype}")
        b, k = s.shape
        if len(realization) != b:
            raise ValueError(f"realization has {len(realization)} images, batch has {b}")
        snr = torch.as_tensor(snr_db, dtype=torch.float32, device=s.device).expand(b).clone()
        n0 = snr_to_n0(snr).to(s.device)
        # gains do not depend on the SNR: computed once per (realization, channel, k)
        h = realization.memo(("gains", self.name, k),
                             lambda: check_gains(self, self.gains(realization, k), b, k)).to(s.device)
        n = realization.cn("noise", k).to(s.device) * torch.sqrt(n0)[:, None]
        # y = h s + n with real arithmetic: bit-identical whatever the batch size or k (torch's vectorised complex
        # multiply rounds the tail of a buffer differently)
        hr, hi, sr, si = h.real, h.imag, s.real, s.imag
        y = torch.complex(hr * sr - hi * si + n.real, hr * si + hi * sr + n.imag)
        return ChannelOutput(y=y.to(torch.complex64), h=h.to(torch.complex64), n0=n0, snr_db=snr)

    def describe(self) -> str:
        """One line naming the channel and its parameters (printed with results)."""
        return self.name

    def pilot_structure(self) -> PilotStructure:
        """How pilots can learn this channel's gains (:class:`PilotStructure`); the default, gains that change
        from use to use, suits any channel (pilots every few uses, interpolated); block-fading and OFDM channels
        declare their structure."""
        return PilotStructure()


def equalize(out: ChannelOutput, mode: str = "mmse") -> Received:
    """Per-symbol equalisation with perfect CSI.

    ZF: s_hat = y / h, noise variance N0 / |h|^2, gain 1.
    MMSE (unit-power symbols): s_hat = conj(h) y / (|h|^2 + N0), gain g = |h|^2 / (|h|^2 + N0),
    noise variance g^2 N0 / |h|^2 (= g (1 - g)).
    """
    h2 = (out.h.abs() ** 2).clamp(min=1e-12)
    n0 = out.n0[:, None]
    if mode == "zf":
        s_hat = out.y / out.h
        gain = torch.ones_like(h2)
        nvar = n0 / h2
    elif mode == "mmse":
        s_hat = out.y * out.h.conj() / (h2 + n0)
        gain = h2 / (h2 + n0)
        nvar = gain * gain * n0 / h2
    else:
        raise ValueError(f"unknown equaliser '{mode}': use 'mmse' or 'zf'")
    return Received(s_hat=s_hat.to(torch.complex64), noise_var=nvar.float(), gain=gain.float(), raw=out)
