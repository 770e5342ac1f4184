"""Pilot stage-1 recipes for LRISC: continue a checkpoint for a few CPU-minutes, validation metric per CPU-minute.

    python benchmarks/lrisc_stage1_pilot.py --mode shipped|mse_T|mix [--crop 128] [--batch 4] [--minutes 3.5]
        [--init shipped|scratch|CKPT]
        [--eta 0.5] [--lam 0.02] [--lr 2e-4] --out RESULT.json

Modes: ``shipped`` = LRISCTask's stage-1 loss (``modules = "source"``) as the shipped model was first trained
(clipped-SNR x0 MSE + LPIPS, eta 0.5, auxiliary decoder past its warm-up); ``mse_T`` = the plain-MSE decoder path only (every sample at t = T, i.e. X_theta(x_N, z, 1)
from pure noise, weight 1); ``mix`` = half the batch at t = T, half uniform t, weight 1, plus LPIPS (eta).
Data: ../shared/data/train without its last 4 photos, plus ../shared/data/train_extra; validation: the last 4
photos of train, 256 x 256 centre crops, stage 1 without channel (bpp from the entropy model; PSNR / LPIPS after
1 and 4 DDIM steps). One torch thread; the budget is process CPU time. A pilot tool, not a training command.
"""
import argparse, json, sys, time, math
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch, numpy as np
torch.set_num_threads(1)
from lrisc_sim.lrisc.model import LRISC
from lrisc_sim.lrisc.config import preset
from lrisc_sim.lrisc.task import LRISCTask
from lrisc_sim.trainer import Batch, LossOutput, StageConfig
from lrisc_sim.lrisc.losses import rdp_loss
from lrisc_sim.data import RandomCrops, image_paths, load_image
from lrisc_sim.metrics import psnr, lpips
CK = str(ROOT / 'lrisc_sim' / 'checkpoints' / 'lrisc' / 'lrisc_small.safetensors')
DATA = ROOT.parent / 'shared' / 'data'
p = argparse.ArgumentParser()
p.add_argument('--mode', default='shipped')  # shipped | mse_T | mix
p.add_argument('--init', default='shipped', help="'shipped', 'scratch' or a checkpoint path")
p.add_argument('--crop', type=int, default=64); p.add_argument('--batch', type=int, default=8)
p.add_argument('--minutes', type=float, default=6); p.add_argument('--lr', type=float, default=2e-4)
p.add_argument('--lam', type=float, default=0.02); p.add_argument('--eta', type=float, default=0.5)
p.add_argument('--out', required=True)
a = p.parse_args()
torch.manual_seed(0)
m = LRISC.load(CK if a.init == 'shipped' else a.init) if a.init != 'scratch' else LRISC(preset('small'))
m.train()
paths = image_paths(DATA / 'train')
train_paths = paths[:-4] + image_paths(DATA / 'train_extra')
val = []
for pth in paths[-4:]:
    im = load_image(pth); h, w = im.shape[-2:]; s = 256
    val.append(im[:, (h-s)//2:(h-s)//2+s, (w-s)//2:(w-s)//2+s])
val = torch.stack(val)
crops = RandomCrops(None, a.crop, seed=1, paths=train_paths); it = iter(crops)
params = [q for mod in m.stage_modules(1) for q in mod.parameters()]
m.requires_grad_(False)
for q in params: q.requires_grad_(True)
opt = torch.optim.Adam(params, lr=a.lr)
task = LRISCTask('small')
stage = StageConfig(name='pilot', crop=a.crop, batch=a.batch, options={'modules': 'source', 'lam': a.lam, 'eta': a.eta,
                    'lpips': a.eta > 0, 'aux_weight': 1.0, 'aux_warmup': 1000})
perc = task.perceptual(stage, torch.device('cpu'))
diff = m.diffusion
@torch.no_grad()
def evaluate():
    m.eval()
    lat = m.latent(val, 'round'); bpp = float(lat.rate_bits().mean()) / (256*256)
    r = {'bpp_model': round(bpp, 4)}
    for k in (1, 4):
        y = m.reconstruct(lat.z_tilde, [0,1,2,3], k)
        r[f'psnr{k}'] = round(float(psnr(val, y).mean()), 3); r[f'lpips{k}'] = round(float(lpips(val, y).mean()), 4)
    m.train(); return r
hist = [{'step': 0, 'cpu_min': 0, **evaluate()}]; print(hist[-1], flush=True)
t0 = time.process_time(); step = 0; last_eval = 0
while True:
    x = crops.batch(a.batch, it)
    if a.mode == 'shipped':
        # step 6000: past the auxiliary decoder's warm-up; stage 1 sends nothing, so no channel link is needed
        out = task.loss(m, Batch(x, torch.zeros(x.shape[0]), None, 6000, torch.Generator().manual_seed(step)), None, stage)
    else:
        b = x.shape[0]
        lat = m.latent(x, 'noise')
        ctx = m.g_d.context(lat.z_tilde)
        n = diff.cfg.num_train_timesteps
        if a.mode == 'mse_T':
            index = torch.full((b,), n - 1)
        else:  # mix: half the batch at t = T, half uniform
            index = torch.randint(0, n, (b,)); index[: b // 2] = n - 1
        xn = diff.add_noise(2 * x - 1, torch.randn(x.shape), index)
        x_bar = m.g_d(xn, diff.time_input(index), context=ctx)
        mse = (x_bar - (2 * x - 1)).pow(2).flatten(1).mean(1).mean()
        dp = perc(x, (x_bar.clamp(-1, 1) + 1) / 2).mean() if (perc is not None and a.eta > 0) else torch.zeros(())
        bpp = lat.rate_bits().mean() / (x.shape[-1] * x.shape[-2])
        total = (1 - a.eta) * mse + a.eta * dp + a.lam * bpp
        out = LossOutput(total, {'d': float(mse.detach()), 'd_p': float(dp.detach()), 'bpp': float(bpp.detach())})
    opt.zero_grad(); out.total.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); step += 1
    cpu = (time.process_time() - t0) / 60
    if step % 25 == 0: print(step, f'{cpu:.1f} cpu-min', {k: round(v, 4) for k, v in out.parts.items()}, flush=True)
    if cpu >= a.minutes: break
hist.append({'step': step, 'cpu_min': round(cpu, 2), **evaluate()}); print(hist[-1], flush=True)
json.dump({'args': vars(a), 'history': hist}, open(a.out, 'w'), indent=1)
