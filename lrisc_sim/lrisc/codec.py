"""LRISC as an engine ``Codec``, the registry factory ``make_lrisc``, and its Fig. 6 maps (``visualize``).

CBR accounting (ARCHITECTURE.md sections 3.4 and 4.2): for a target CBR the encoder picks beta per image by bisection
(``jscc.rate_control``) so that

    payload uses sum_i v_{q_i}  +  side uses  <=  floor(CBR * 3 H W)     (H x W: the original, unpadded size)

where the side uses are the rate indices q (the only side information: beta stays at the transmitter), coded
by ``RateIndexCoding`` (default ``auto``: flag bits + the cheapest of the model's codes among n bits per token, an
enumerative code and a spatial-context arithmetic code, see ``rate_index``; optionally one index per 2 x 2 tokens)
and charged by the sweep's rule ``Context.side_charge`` (default 1 bit per complex channel use, error-free). Payload and
side CBR are reported separately by the engine (``Encoded.length`` and ``Encoded.side_bits``).

Tokens of the reflect-padded border (when H or W is not a multiple of ``multiple``) are coded like the others
and cost channel uses from the same budget.

Decoding is deterministic: the diffusion sampler's x_N is drawn from a generator seeded by a hash of the
image's 8-bit pixels and the codec's ``seed`` (kept in ``Encoded.state``), independent of the batch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from channels.base import Received
from lrisc_sim.codec import Codec, Context, Decoded, Encoded, Option
from lrisc_sim.lrisc.jscc import RateIndexCoding, rate_control, token_snr
from lrisc_sim.lrisc.model import LRISC
from lrisc_sim.lrisc.rate_index import MODES
from lrisc_sim.plugins import codec_factory

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "lrisc"
#: the shipped operating points of eq. (11) (codec option ``point``): weights file and the recipe that makes it
POINTS = {"perceptual": (CHECKPOINT_DIR / "lrisc_small_perceptual.safetensors", "recipes/lrisc_perceptual.toml"),
          "distortion": (CHECKPOINT_DIR / "lrisc_small.safetensors", "recipes/lrisc_small.toml")}
#: the paper's operating point (eta >= 0.5 in eq. 11) is the default
DEFAULT_POINT = "perceptual"
DEFAULT_CHECKPOINT, DEFAULT_RECIPE = POINTS[DEFAULT_POINT]
#: denoising steps when the user chooses none, set from the decode-time perception-distortion curves on the
#: validation photos (benchmarks/results/lrisc_perception_distortion_*val.md): 2 steps are at least as good as
#: any other count on PSNR and LPIPS, and the sampler noise changes nothing
DEFAULT_STEPS = 2
DEFAULT_ENCODER_SNR = 10.0  # SNR given to f_e's SNR module when the engine passes none


class LRISCError(ValueError):
    """A configuration problem of the LRISC codec (missing checkpoint, ...), with the fix in the message."""


def image_seed(x: torch.Tensor, seed: int = 0) -> int:
    """A 63-bit seed from the 8-bit pixels of one image ``3 x H x W`` in [0, 1] and a global ``seed``."""
    arr = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    h = hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=8, key=str(int(seed)).encode())
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


class LRISCCodec(Codec):
    """The paper's codec (Fig. 1) behind the engine interface.

    Parameters
    ----------
    model : a trained ``LRISC``.
    steps : denoising steps of g_d (default: the model's ``diffusion.steps``).
    sampler : ``ddim`` (eq. 8) or ``dpm`` (DPM-Solver++ 2M).
    seed : global seed mixed into the per-image sampler seeds.
    coding : rate-index coding (``auto``, ``fixed``, ``enumerative``, ``context``; default ``auto`` over the
        model's ``jscc.side_codes``).
    rate_block : one rate index per ``rate_block x rate_block`` tokens (default: the model's ``jscc.rate_block``;
        1 is one per token, eq. 3 as written).
    checkpoint : path shown by ``describe``.

    encode: ``B x 3 x H x W`` (H, W multiples of ``multiple``), target CBR, SNR (B, dB) -> ``Encoded`` with
    ``B x k_max`` complex64 symbols (unit mean power over the first length[b]), length (payload uses) and
    side_bits (rate indices); ``state`` keeps q, the latent grid, the seeds and the latents (for Fig. 6).
    decode: equalised symbols (made unbiased: s_hat / gain), per-token SNR_i from the effective noise variance
    -> f_d -> z_hat -> g_d sampling -> ``B x 3 x H x W`` in [0, 1].
    """

    name = "lrisc"
    snr_aware_encoder = True
    options = (Option("checkpoint", "path", None, "a .safetensors LRISC model (default: the shipped model of "
                      "'point')"),
               Option("point", "str", DEFAULT_POINT, "shipped operating point of eq. (11): perceptual (the paper's, "
                      "eta 0.5 then 0.8, trained at CBR 1/48; lrisc_small_perceptual) or distortion "
                      "(fine-tuned to eta 0.05 for PSNR; lrisc_small)", choices=tuple(POINTS)),
               Option("steps", "int", DEFAULT_STEPS, "denoising steps of g_d, chosen at decode time "
                      "(benchmarks/results/lrisc_decode_time.md)", low=1, high=1000),
               Option("sampler", "str", "ddim", "diffusion sampler: ddim (eq. 8) or dpm (DPM-Solver++ 2M)",
                      choices=("ddim", "dpm")),
               Option("noise", "float", 0.0, "sampler noise eta of stochastic DDIM (0: deterministic eq. 8, "
                      "1: ancestral); ddim only", low=0.0, high=1.0),
               Option("seed", "int", 0, "global seed mixed into the per-image sampler seeds", low=0, high=2**63 - 1),
               Option("coding", "str", "auto", "rate-index coding", choices=MODES),
               Option("rate_block", "int", None, "one rate index per N x N tokens (default: the model's)",
                      low=1, high=64))
    spec_arg = "a checkpoint path (lrisc:PATH = lrisc:checkpoint=PATH)"

    def __init__(self, model: LRISC, steps: int | None = None, sampler: str | None = None, seed: int = 0,
                 coding: str | None = None, checkpoint: str | Path | None = None, rate_block: int | None = None,
                 noise: float = 0.0):
        self.model = model.eval()
        self.steps = int(steps) if steps else DEFAULT_STEPS  # a decode-time choice, not the weights'
        self.sampler = sampler or "ddim"
        self.noise = float(noise)
        if not 0.0 <= self.noise <= 1.0 or (self.noise > 0 and self.sampler != "ddim"):
            raise LRISCError(f"noise={noise}: the sampler noise eta lies in [0, 1] and needs sampler=ddim")
        self.seed = int(seed)
        jc = model.cfg.jscc
        self.coding = RateIndexCoding(coding or "auto", tuple(jc.side_codes))
        rb = rate_block if rate_block is not None else jc.rate_block
        if isinstance(rb, bool) or not isinstance(rb, int) or rb < 1:
            raise LRISCError(f"rate_block must be a positive integer (tokens per rate index along each side), got "
                             f"{rb!r}")
        self.rate_block = rb
        self.checkpoint = checkpoint
        self.multiple = model.cfg.multiple
        self.device = next(model.parameters()).device

    def to(self, device: torch.device | str) -> LRISCCodec:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def weight_files(self) -> list[Path]:
        return [Path(self.checkpoint)] if self.checkpoint else []

    def describe(self) -> str:
        ck = self.checkpoint or "in-memory model"
        shipped = Path(__file__).resolve().parents[1] / "checkpoints"
        if self.checkpoint and Path(self.checkpoint).resolve().is_relative_to(shipped):
            ck = f"shipped {Path(self.checkpoint).name}"
        blk = f", one per {self.rate_block}x{self.rate_block} tokens" if self.rate_block > 1 else ""
        noise = f", noise {self.noise:g}" if self.noise else ""
        return (f"lrisc ({self.model.cfg.preset} preset, {ck}; {self.sampler} {self.steps} steps{noise}; rate indices "
                f"{self.coding.mode}-coded{blk})")

    @torch.no_grad()
    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        m = self.model
        x = x.to(self.device)
        b = x.shape[0]
        lat = m.latent(x, "round")
        budget = ctx.budget(cbr)
        snr_db = ctx.snr_db
        snr = (torch.full((b,), DEFAULT_ENCODER_SNR, device=self.device) if snr_db is None
               else torch.as_tensor(snr_db, dtype=torch.float32, device=self.device).expand(b))
        grid = tuple(lat.z.shape[-2:])
        rd = rate_control(lat.token_bits(), budget, m.f_e.quantizer, ctx.side_charge, self.coding,
                          snr if snr_db is not None else None, grid=grid, block=self.rate_block)
        s, length = m.f_e(lat.z_tilde, rd.q, snr)
        seeds = [image_seed(x[i], self.seed) for i in range(b)]
        state = {"q": rd.q, "grid": grid, "seeds": seeds, "z": lat.z, "z_tilde": lat.z_tilde,
                 "entropy_bits": lat.token_bits()}
        info = {"beta": [float(v) for v in rd.beta], "side_coding": [self.coding.mode] * b,
                "mean_level": [float(v) for v in m.f_e.quantizer.lengths(rd.q).float().mean(1)]}
        return Encoded(symbols=s, length=length.cpu(), side_bits=rd.side_bits.float().cpu(), state=state,
                       info=info)

    # the engine may stack (SNR, trial) points into one decode; off by default: a batched U-Net rounds differently
    # (about 1e-5, README "Batch sizes"). The diffusion seeds travel with the rows (state "seeds").
    batched_decode = False

    def concat_encoded(self, encs: list[Encoded]) -> Encoded:
        """Rows of ``encs`` one after the other (``latent_hat`` ignores the symbol slots past a row's length)."""
        from lrisc_sim.codec import concat_encoded, shared

        sts = [e.state for e in encs]
        state = {"grid": shared(sts, "grid"), "seeds": [v for st in sts for v in st["seeds"]],
                 **{key: torch.cat([st[key] for st in sts]) for key in ("q", "z", "z_tilde", "entropy_bits")}}
        return concat_encoded(encs, state)

    @torch.no_grad()
    def latent_hat(self, rx: Received, enc: Encoded) -> torch.Tensor:
        """f_d: the received latent z_hat ``B x C x h x w`` (the "transmitted latent feature" of Fig. 6)."""
        m = self.model
        st = enc.state
        k = enc.symbols.shape[1]
        gain = rx.gain[:, :k].to(self.device).clamp(min=1e-12)
        s_hat = rx.s_hat[:, :k].to(self.device) / gain
        nvar = rx.noise_var[:, :k].to(self.device) / gain**2
        snr_i = token_snr(nvar, st["q"], m.f_d.quantizer)
        return m.f_d(s_hat, st["q"], st["grid"], snr_i)

    @torch.no_grad()
    def visualize(self, x: torch.Tensor, enc: Encoded, rx: Received, ctx: Context) -> dict[str, torch.Tensor]:
        """Fig. 6 maps of the first image, each ``3 x H x W`` in [0, 1] at the original size: ``latent`` (z),
        ``received_latent`` (z_hat, drawn with z's projection and range) and ``rate_map`` (v_{q_i} / v_max)."""
        z_hat = self.latent_hat(rx, enc)
        hp, wp = x.shape[-2:]
        h0, w0 = ctx.hw
        z = enc.state["z"][0]
        q = enc.state["q"][0]
        levels = self.model.f_e.quantizer.lengths(q).float().reshape(enc.state["grid"])
        rate = (levels / self.model.f_e.quantizer.levels[-1])[None].expand(3, -1, -1)
        rate = torch.nn.functional.interpolate(rate[None], size=(hp, wp), mode="nearest")[0]
        return {"latent": latent_rgb(z, z, (hp, wp))[:, :h0, :w0],
                "received_latent": latent_rgb(z_hat[0], z, (hp, wp))[:, :h0, :w0],
                "rate_map": rate[:, :h0, :w0]}

    @torch.no_grad()
    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        z_hat = self.latent_hat(rx, enc)
        images = self.model.reconstruct(z_hat, enc.state["seeds"], self.steps, self.sampler, self.noise)
        b = images.shape[0]
        return Decoded(images=images.clamp(0, 1), ok=torch.ones(b, dtype=torch.bool))


@codec_factory(LRISCCodec.options, arg=LRISCCodec.spec_arg)
def make_lrisc(arg: str | None = None, **options) -> LRISCCodec:
    """Registry factory. ``arg``: a checkpoint path (``lrisc:PATH``) or None (the shipped small model).

    Options: ``device``, ``checkpoint`` (path) or ``point`` (a shipped operating point, :data:`POINTS`), ``steps``
    (denoising steps), ``sampler`` (``ddim``/``dpm``),
    ``seed``, ``coding`` (rate-index coding), ``rate_block`` (tokens per rate index along each side).
    """
    point = options.get("point")
    given = arg or options.get("checkpoint")
    if given and point is not None:
        raise LRISCError(f"give either checkpoint={given} or point={point}, not both (point names a shipped model)")
    shipped, recipe = POINTS[point or DEFAULT_POINT]
    path = Path(given or shipped)
    if not path.is_file():
        if not given:
            raise LRISCError(f"no shipped LRISC checkpoint for point={point or DEFAULT_POINT} ({path}): train one "
                             f"with `lrisc-sim train {recipe}` or pass checkpoint=PATH")
        raise LRISCError(f"LRISC checkpoint {path} not found")
    device = options.get("device") or "cpu"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = LRISC.load(path, device)
    return LRISCCodec(model, steps=options.get("steps"), sampler=options.get("sampler"),
                      seed=int(options.get("seed", 0)), coding=options.get("coding"), checkpoint=path,
                      rate_block=options.get("rate_block"), noise=options.get("noise", 0.0))


def availability(name: str) -> str:
    """'ok' when the shipped checkpoint exists, else how to get one."""
    if DEFAULT_CHECKPOINT.is_file():
        return "ok"
    return f"no shipped checkpoint yet: `lrisc-sim train {DEFAULT_RECIPE}`, or checkpoint=PATH"


def latent_rgb(z: torch.Tensor, reference: torch.Tensor | None = None, size: tuple[int, int] | None = None
               ) -> torch.Tensor:
    """Visualise a latent ``C x h x w`` as RGB ``3 x h x w`` (or ``size``) in [0, 1]: projection on the three
    principal components of ``reference`` (default z itself), scaled by the reference's 1st/99th percentiles,
    so z and z_hat drawn with the same reference are comparable (Fig. 6 rows 2-3)."""
    ref = (reference if reference is not None else z).float()
    c = ref.shape[0]
    r = ref.reshape(c, -1)
    mean = r.mean(1, keepdim=True)
    u, _, _ = torch.linalg.svd(r - mean, full_matrices=False)
    basis = u[:, :3]
    if basis.shape[1] < 3:
        basis = torch.nn.functional.pad(basis, (0, 3 - basis.shape[1]))
    proj_ref = basis.T @ (r - mean)
    lo = torch.quantile(proj_ref, 0.01, dim=1, keepdim=True)
    hi = torch.quantile(proj_ref, 0.99, dim=1, keepdim=True)
    p = basis.T @ (z.float().reshape(c, -1) - mean)
    img = ((p - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1).reshape(3, *z.shape[-2:])
    if size is not None:
        img = torch.nn.functional.interpolate(img[None], size=size, mode="nearest")[0]
    return img
