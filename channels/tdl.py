"""3GPP TR 38.901 tapped-delay-line (TDL) channels over OFDM, with the power delay profiles from Sionna.

Sionna is imported lazily (only when a TDL channel is built): it costs seconds at import time.
"""

from __future__ import annotations

import math

import torch

from channels.base import Channel, PilotStructure, check_alloc
from channels.realization import Realization

#: Scalable TR 38.901 profiles (delays scaled by the delay spread).
SCALABLE_PROFILES = ("A", "B", "C", "D", "E")
#: Fixed-delay TS 38.101-4 profiles and their RMS delay spread [s] (``delay_spread`` does not apply).
FIXED_PROFILES = {"A10": 10e-9, "A30": 30e-9, "B100": 100e-9, "C60": 60e-9, "C300": 300e-9,
                  "D10": 10e-9, "D30": 30e-9}
#: TR 38.901 Table 7.7.3-1 "nominal" delay spread.
DEFAULT_DELAY_SPREAD = 100e-9
#: Speed of light [m/s] (the value Sionna uses).
SPEED_OF_LIGHT = 299792458.0
#: Physical ranges of the options (also checked by the channel grammar, ``channels.registry``): RMS delay spread up
#: to 10 us (TR 38.901 Table 7.7.3-2 ends at 1 us), speed up to 1000 m/s, carrier 100 MHz..100 GHz (TR 38.901:
#: 0.5-100 GHz), subcarrier spacing 1 kHz..10 MHz (NR: 15-960 kHz), FFT size up to 4096 (the NR maximum).
MAX_DS = 10e-6
MAX_SPEED = 1000.0
FC_RANGE = (1e8, 1e11)
SCS_RANGE = (1e3, 1e7)
MAX_FFT = 4096
#: Angle of arrival of the LOS path, TR 38.901 7.7.2 (Doppler peak at 0.7 f_D), as in Sionna's TDL.
LOS_ANGLE_OF_ARRIVAL = math.acos(0.7)


class TDLChannel(Channel):
    r"""3GPP TDL channel (TR 38.901 7.7.2) seen through OFDM: one frequency-response value per symbol.

    The power delay profile (tap delays :math:`\tau_\ell` and powers :math:`P_\ell`, normalised to
    :math:`\sum_\ell P_\ell = 1`, LOS power :math:`P_\mathrm{LOS}` for TDL-D/E included) is read from Sionna's
    :class:`sionna.phy.channel.tr38901.TDL`. The tap coefficients follow the same sum-of-sinusoids model as
    Sionna's TDL (Xiao, Zheng, Beaulieu 2006), but every random number comes from the image's realization:

    .. math::
        a_\ell(t) = \sqrt{\frac{P_\ell}{N}} \sum_{n=1}^{N} e^{j(\omega_D t \cos\alpha_{\ell,n} + \varphi_{\ell,n})}
        \;+\; [\ell = 0]\, \sqrt{P_\mathrm{LOS}}\, e^{j(\omega_D t \cos\theta_\mathrm{LOS} + \varphi_0)}

    with :math:`\alpha_{\ell,n} = 2\pi n / N + \theta_{\ell,n}`, :math:`\theta_{\ell,n} \sim
    \mathcal{U}(-\pi/N, \pi/N)`, :math:`\varphi_{\ell,n}, \varphi_0 \sim \mathcal{U}(-\pi, \pi)`,
    :math:`\omega_D = 2\pi v f_c / c`, :math:`\theta_\mathrm{LOS} = \arccos 0.7`. The frequency response at
    OFDM symbol :math:`m` (time :math:`t_m = m T`, :math:`T = (15/14) / \Delta f`, the mean 5G NR symbol duration
    with normal cyclic prefix) and subcarrier frequency :math:`f_q` (Sionna's ``subcarrier_frequencies``) is
    computed by Sionna's ``cir_to_ofdm_channel``:

    .. math::
        H_{m,q} = \sum_\ell a_\ell(t_m)\, e^{-j 2\pi f_q \tau_\ell}, \qquad \mathbb{E}|H_{m,q}|^2 = 1

    and symbol :math:`i` of an image is carried by resource element :math:`(m, q) = (\lfloor i / F \rfloor,
    i \bmod F)` (frequency first), :math:`F` = ``fft_size``: :math:`h_i = H_{m,q}`. The receiver has perfect
    CSI; there are no pilots, guard bands or inter-carrier interference (the cyclic prefix covers the delay
    spread).

    **Identical realizations.** Sionna's own TDL draws from one generator shared by the whole device, so it is
    not called for the random part. The :math:`2 L N` numbers :math:`\theta_{\ell,n}` then
    :math:`\varphi_{\ell,n}` (tap-major) are the first draws of stream "fading" and :math:`\varphi_0` the first
    draw of stream "phase" of the image's :class:`~channels.realization.Realization`. Their number does not
    depend on :math:`k`, and :math:`a_\ell(t)` is a deterministic function of them, so the gains of an image
    depend only on (seed, image id, trial): the same whatever the batch, and a codec sending :math:`k_1 < k_2`
    symbols sees the first :math:`k_1` gains of the longer transmission. The speed is fixed (no random draw).

    :param model: TDL profile: ``"A"``-``"E"`` (TR 38.901, scaled by ``delay_spread``) or one of the fixed
        TS 38.101-4 profiles ``"A10"``, ``"A30"``, ``"B100"``, ``"C60"``, ``"C300"``, ``"D10"``, ``"D30"``.
    :param delay_spread: RMS delay spread [s] of the scalable profiles (default 100 ns, "nominal");
        must be `None` for the fixed profiles.
    :param carrier_frequency: Carrier frequency [Hz]. Default 3.5 GHz.
    :param speed: Terminal speed [m/s]; 0 (default) gives a channel that is static over the image.
    :param subcarrier_spacing: Subcarrier spacing :math:`\Delta f` [Hz]. Default 30 kHz.
    :param fft_size: Number of subcarriers :math:`F` carrying symbols. Default 128.
    :param num_sinusoids: Sinusoids :math:`N` per tap (Sionna's default, 20).

    :input s: [B, k], `torch.complex64`. Unit-power symbols of each image.
    :input snr_db: [B] or scalar, `torch.float32`. Es/N0 in dB per complex symbol.
    :input realization: :class:`~channels.realization.Realization` of the B images.

    :output out: :class:`~channels.base.ChannelOutput` with ``y``, ``h`` [B, k] `torch.complex64` and
        ``n0``, ``snr_db`` [B] `torch.float32`.

    .. rubric:: Examples

    >>> from channels.realization import Realization
    >>> ch = TDLChannel("A", delay_spread=100e-9, speed=3.0)
    >>> ch.gains(Realization(0, ["kodim01"], 0), 300).shape
    torch.Size([1, 300])
    """

    def __init__(self, model: str = "A", delay_spread: float | None = None, carrier_frequency: float = 3.5e9,
                 speed: float = 0.0, subcarrier_spacing: float = 30e3, fft_size: int = 128,
                 num_sinusoids: int = 20):
        model = str(model).upper()
        if model in FIXED_PROFILES:
            if delay_spread is not None and delay_spread != FIXED_PROFILES[model]:
                raise ValueError(f"TDL-{model} has a fixed delay spread of {FIXED_PROFILES[model] * 1e9:g} ns; "
                                 "do not set delay_spread")
            delay_spread = FIXED_PROFILES[model]
            self._fixed = True
        elif model in SCALABLE_PROFILES:
            delay_spread = DEFAULT_DELAY_SPREAD if delay_spread is None else float(delay_spread)
            self._fixed = False
        else:
            raise ValueError(f"unknown TDL profile '{model}': use one of "
                             f"{', '.join(SCALABLE_PROFILES + tuple(FIXED_PROFILES))}")
        checks = [(0 < delay_spread <= MAX_DS, f"delay spread must be in (0, {MAX_DS:g}] s"),
                  (FC_RANGE[0] <= carrier_frequency <= FC_RANGE[1],
                   f"carrier frequency must be in {FC_RANGE[0]:g}..{FC_RANGE[1]:g} Hz"),
                  (0 <= speed <= MAX_SPEED, f"speed must be in 0..{MAX_SPEED:g} m/s"),
                  (SCS_RANGE[0] <= subcarrier_spacing <= SCS_RANGE[1],
                   f"subcarrier spacing must be in {SCS_RANGE[0]:g}..{SCS_RANGE[1]:g} Hz"),
                  (math.isfinite(fft_size) and int(fft_size) == fft_size and 1 <= fft_size <= MAX_FFT,
                   f"fft_size must be an integer in 1..{MAX_FFT}"),
                  (int(num_sinusoids) == num_sinusoids and num_sinusoids >= 1, "num_sinusoids must be >= 1")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        self.model = model
        self.delay_spread = float(delay_spread)
        self.carrier_frequency = float(carrier_frequency)
        self.speed = float(speed)
        self.subcarrier_spacing = float(subcarrier_spacing)
        self.fft_size = int(fft_size)
        self.num_sinusoids = int(num_sinusoids)
        #: Mean OFDM symbol duration [s] (5G NR, normal cyclic prefix: 14 symbols per 1 / (Delta f / 15 kHz) ms).
        self.symbol_duration = (15.0 / 14.0) / self.subcarrier_spacing
        #: Maximum Doppler shift [rad/s].
        self.omega_d = 2.0 * math.pi * self.speed * self.carrier_frequency / SPEED_OF_LIGHT

        from sionna.phy.channel import subcarrier_frequencies
        from sionna.phy.channel.tr38901 import TDL

        profile = TDL(model=model, delay_spread=None if self._fixed else self.delay_spread,
                      carrier_frequency=self.carrier_frequency, num_sinusoids=self.num_sinusoids,
                      precision="single", device="cpu")
        powers = profile.mean_powers.detach().cpu().double().numpy().copy()
        self.los = bool(profile.los)
        self.los_power = float(profile.mean_power_los) if self.los else 0.0
        powers[0] -= self.los_power  # diffuse power of the first tap
        #: Tap delays [s] and diffuse tap powers (sum with ``los_power`` = 1), float32 CPU tensors.
        self.delays = profile.delays.detach().cpu().float()
        self.powers = torch.from_numpy(powers).float()
        self.num_taps = int(self.delays.numel())
        self.frequencies = subcarrier_frequencies(self.fft_size, self.subcarrier_spacing,
                                                  precision="double", device="cpu")
        self._ofdm = _lazy_cir_to_ofdm()

        self.name = f"tdl-{model.lower()}:" + ("" if self._fixed else f"ds={self.delay_spread * 1e9:g}e-9,") + (
            f"fc={self.carrier_frequency / 1e9:g}e9,speed={self.speed:g},scs={self.subcarrier_spacing / 1e3:g}e3,"
            f"fft={self.fft_size}")

    @property
    def doppler_hz(self) -> float:
        """Maximum Doppler frequency f_D = v f_c / c [Hz]."""
        return self.omega_d / (2.0 * math.pi)

    def taps(self, realization: Realization, times: torch.Tensor) -> torch.Tensor:
        """Tap coefficients :math:`a_\\ell(t)`.

        :input realization: :class:`~channels.realization.Realization` of B images.
        :input times: [T], `torch.float`. Sample times [s].
        :output a: [B, L, T], `torch.complex64`. Tap coefficients (L taps, :math:`\\sum_\\ell \\mathbb{E}|a_\\ell|^2
            = 1`).
        """
        return self._taps(realization, times).to(torch.complex64)

    def _taps(self, realization: Realization, times: torch.Tensor) -> torch.Tensor:
        dev = realization.device
        b, nl, ns = len(realization), self.num_taps, self.num_sinusoids
        u = realization.uniform("fading", 2 * nl * ns).to(torch.float64)
        theta = (u[:, : nl * ns] * 2.0 - 1.0) * (math.pi / ns)
        phi = u[:, nl * ns:] * (2.0 * math.pi) - math.pi
        n = torch.arange(1, ns + 1, dtype=torch.float64, device=dev)
        alpha = (2.0 * math.pi / ns) * n + theta.reshape(b, nl, ns)
        # Doppler rate of each sinusoid [rad/s] and phase: B x L x 1 x N
        rate = (self.omega_d * torch.cos(alpha))[:, :, None, :]
        phase = phi.reshape(b, nl, 1, ns)
        t = times.to(device=dev, dtype=torch.float64)
        amp = torch.sqrt(self.powers.to(device=dev, dtype=torch.float64) / ns)[None, :, None]
        chunk = max(1, (1 << 22) // max(1, b * nl * ns))  # bound the B x L x T x N intermediate
        parts = []
        for start in range(0, t.numel(), chunk):
            arg = rate * t[None, None, start:start + chunk, None] + phase
            parts.append(torch.polar(torch.ones_like(arg), arg).sum(dim=-1) * amp)
        a = torch.cat(parts, dim=2) if parts else torch.zeros(b, nl, 0, dtype=torch.complex128, device=dev)
        if self.los:
            phi0 = realization.uniform("phase", 1).to(torch.float64) * (2.0 * math.pi) - math.pi
            arg0 = self.omega_d * math.cos(LOS_ANGLE_OF_ARRIVAL) * t[None, :] + phi0
            a[:, 0, :] += math.sqrt(self.los_power) * torch.polar(torch.ones_like(arg0), arg0)
        return a

    def gains(self, realization: Realization, k: int) -> torch.Tensor:
        """[B, k] `torch.complex64`: the frequency response at the resource element of each symbol."""
        dev = realization.device
        b = len(realization)
        n_sym = max(1, -(-k // self.fft_size))
        static = self.omega_d == 0.0
        # bytes of the OFDM response B x T x F and its B x n_sym x F copy (complex128), Sionna's B x L x F phase
        # factors and the taps B x L x T, and the B x k complex64 gains: estimated before anything is allocated
        t_steps = 1 if static else n_sym
        check_alloc(self.name, f"the OFDM grid of {b} image(s) x {n_sym} OFDM symbols x {self.fft_size} subcarriers",
                    16.0 * b * ((t_steps + n_sym) * self.fft_size + self.num_taps * (t_steps + self.fft_size))
                    + 8.0 * b * k,
                    "send fewer images per batch (--batch-size) or use a lower CBR")
        times = torch.arange(t_steps, dtype=torch.float64) * self.symbol_duration
        a = self._taps(realization, times)  # B x L x T, complex128
        # Sionna shapes: a [B, rx=1, rx_ant=1, tx=1, tx_ant=1, L, T], tau [B, rx=1, tx=1, L]. Computed in double
        # precision and rounded once to complex64, so that the result of an image does not depend (to the bit)
        # on how vectorised kernels split the batch or on the number of OFDM symbols.
        a7 = a[:, None, None, None, None, :, :]
        tau = self.delays.to(device=dev, dtype=torch.float64)[None, None, None, :].expand(b, 1, 1, -1)
        freqs = self.frequencies.to(device=dev, dtype=torch.float64)
        h = self._ofdm(freqs, a7, tau, normalize=False)  # [B, 1, 1, 1, 1, T, F]
        h = h.reshape(b, -1, self.fft_size)
        if static:
            h = h.expand(b, n_sym, self.fft_size)
        return h.reshape(b, -1)[:, :k].to(torch.complex64).contiguous()

    def pilot_structure(self) -> PilotStructure:
        """An OFDM resource grid of ``fft_size`` subcarriers, with the profile's frequency covariance
        (:func:`frequency_covariance`, computed when an LMMSE estimator asks for it)."""
        return PilotStructure("ofdm", fft_size=self.fft_size, freq_cov=lambda: frequency_covariance(self))

    def describe(self) -> str:
        kind = "TS 38.101-4" if self._fixed else "TR 38.901"
        los = f", LOS K={10 * math.log10(self.los_power / self.powers[0].item()):.1f} dB" if self.los else ""
        return (f"3GPP {kind} TDL-{self.model} ({self.num_taps} taps{los}, profile from Sionna), "
                f"DS {self.delay_spread * 1e9:g} ns, fc {self.carrier_frequency / 1e9:g} GHz, "
                f"speed {self.speed:g} m/s (fD {self.doppler_hz:.1f} Hz), OFDM {self.fft_size} subcarriers x "
                f"{self.subcarrier_spacing / 1e3:g} kHz, symbol i on subcarrier i mod {self.fft_size} of OFDM "
                f"symbol i div {self.fft_size}, perfect CSI")


def _lazy_cir_to_ofdm():
    from sionna.phy.channel import cir_to_ofdm_channel

    return cir_to_ofdm_channel


def frequency_covariance(channel: TDLChannel) -> torch.Tensor:
    r"""[F, F] `torch.complex128`: :math:`R_{u,v} = \mathbb{E}[H_u H_v^*] = \sum_\ell P_\ell
    e^{-j 2\pi (f_u - f_v) \tau_\ell}` of a :class:`~channels.tdl.TDLChannel` (tap powers with the LOS power on
    the first tap, :math:`\sum_\ell P_\ell = 1`; subcarrier frequencies :math:`f_q` as the channel uses them)."""
    powers = channel.powers.to(torch.float64).clone()
    powers[0] += channel.los_power
    tau = channel.delays.to(torch.float64)
    f = channel.frequencies.to(torch.float64).cpu()
    df = f[:, None] - f[None, :]  # F x F
    phase = -2.0 * math.pi * df[None] * tau[:, None, None]  # L x F x F
    return (powers[:, None, None] * torch.polar(torch.ones_like(phase), phase)).sum(dim=0)
