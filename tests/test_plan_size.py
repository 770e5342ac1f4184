"""Plan sizing (issue 29 item 6): a sweep plan is sized before it is built (trials <= 10^6, image-points <= 10^7,
refused with the count and the limit), and below the limit it is lazy, so the first point runs at once (cases
trials_huge, toml_trials_huge, --snr -100:100:0.02 with several trials). Resumed plans skip exactly the finished
points, as the eager planner did."""

from __future__ import annotations

import time

import pytest
import torch

from channels.awgn import AWGN
from lrisc_sim.cli import main
from lrisc_sim.data import Item
from lrisc_sim.engine import MAX_IMAGE_POINTS, Engine, PointGrid, count_points
from lrisc_sim.results import point_key
from lrisc_sim.sweep_config import MAX_TRIALS, ConfigError, SweepConfig


def its(n=3, hw=(16, 16)):
    g = torch.Generator().manual_seed(0)
    return [Item(f"i{j}", torch.rand(3, *hw, generator=g)) for j in range(n)]


def engine(**kw) -> Engine:
    base = dict(codecs=["uncoded"], snr_db=[0.0, 10.0], cbr=[1 / 2], trials=2, batch_size=2, metrics=("psnr",))
    return Engine(SweepConfig(**{**base, **kw}), AWGN(), torch.device("cpu"))


def eager(eng: Engine, items, done):
    """The planner before issue 29: every (codec, CBR, batch) with the (SNR, trial) points some image lacks."""
    from lrisc_sim.data import group_by_size

    out = []
    for spec in eng.cfg.codecs:
        for cbr in eng.cfg.cbr:
            for batch in group_by_size(items, eng.cfg.batch_size):
                pts = [(s, t) for s in eng.cfg.snr_db for t in range(eng.cfg.trials)
                       if any(point_key(spec, float(cbr), s, eng.channel_label, t, it.id) not in done for it in batch)]
                if pts:
                    out.append((spec, cbr, [it.id for it in batch], pts))
    return out


def as_tuples(plan):
    return [(t.codec, t.cbr, [it.id for it in t.items], list(t.points)) for t in plan]


def test_point_grid_is_the_snr_major_list():
    g = PointGrid([0.0, 5.0, 10.0], 4)
    full = [(s, t) for s in (0.0, 5.0, 10.0) for t in range(4)]
    assert len(g) == 12 and list(g) == full and g[5] == full[5] and g[-1] == full[-1] and g[3:9] == full[3:9]
    with pytest.raises(IndexError):
        g[12]


def test_lazy_plan_equals_the_eager_planner_fresh_and_resumed():
    eng = engine(codecs=["uncoded", "softcast"], cbr=[1 / 2, 1 / 4])
    items = its(3)
    ch = eng.channel_label
    assert as_tuples(eng.plan(items, set())) == eager(eng, items, set())
    # resume: uncoded 1/2 fully done; softcast 1/4 done for image i0 at SNR 0 only; an unrelated key
    done = {point_key("uncoded", 0.5, s, ch, t, f"i{j}") for s in (0.0, 10.0) for t in range(2) for j in range(3)}
    done |= {point_key("softcast", 0.25, 0.0, ch, t, "i0") for t in range(2)}
    done |= {point_key("softcast", 0.25, 0.0, "rayleigh", 0, "i1")}
    plan = eng.plan(items, done)
    assert as_tuples(plan) == eager(eng, items, done)
    assert len(plan) == len(eager(eng, items, done)) == 6
    assert count_points(plan) == sum(len(p) * len(ids) for _, _, ids, p in eager(eng, items, done))


def test_plan_over_the_limit_is_refused_with_the_count():
    eng = engine(snr_db=[float(s) for s in range(-50, 51)], trials=100_000)
    with pytest.raises(ConfigError) as e:
        eng.plan(its(1), set())
    msg = str(e.value)
    assert e.value.field == "trials" and "1 codec(s) x 1 CBR(s) x 101 SNR(s) x 100000 trial(s) x 1 image(s)" in msg
    assert "= 10,100,000 image-points, over the limit of 10,000,000" in msg and MAX_IMAGE_POINTS == 10**7


def test_plan_below_the_limit_is_lazy_and_starts_at_once():
    """10^6 trials x 10 SNRs on one image (10^7 image-points, the limit): planning and the first point take well
    under a second (the eager planner listed 10^7 points before anything ran)."""
    eng = engine(snr_db=[float(s) for s in range(10)], trials=MAX_TRIALS, batch_size=1)
    t0 = time.perf_counter()
    plan = eng.plan(its(1), set())
    task = next(iter(plan))
    rows = next(eng.run_task(task))
    assert time.perf_counter() - t0 < 5.0
    assert isinstance(task.points, PointGrid) and count_points(plan) == 10**7 and len(plan) == 1
    assert rows[0].snr_db == 0.0 and rows[0].trial == 0


@pytest.mark.parametrize("extra, needle", [
    (["--trials", "9223372036854775807"], "--trials: 9,223,372,036,854,775,807 trials is over the limit of 1,000,000"),
    (["--trials", "1000", "--snr", "-100:100:0.02"], "--snr: the sweep has 1 codec(s) x 1 CBR(s) x 10001 SNR(s) x "
                                                     "1000 trial(s) x 3 image(s) = 30,003,000 image-points"),
])
def test_cli_refuses_huge_plans_at_once(extra, needle, tmp_path, tiny_folder, capsys):
    t0 = time.perf_counter()
    rc = main(["sweep", "--no-progress", "--metrics", "psnr", "--dataset", str(tiny_folder), "--codec", "uncoded",
               "--snr", "10", "--cbr", "1/16", "--out", str(tmp_path / "o"), "--threads", "1", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and needle in err[-1], err
    assert time.perf_counter() - t0 < 30


def test_toml_trials_huge_is_refused(tmp_path):
    from lrisc_sim.experiment import ExperimentError, load_experiment

    exp = tmp_path / "e.toml"
    exp.write_text(f'trials = {2**63 - 1}\n[grid]\nsnr = "10"\ncbr = "1/16"\n[[codecs]]\nspec = "uncoded"\n')
    with pytest.raises((ExperimentError, ConfigError), match="trials.*over the limit of 1,000,000"):
        load_experiment(exp).sweep.validate()


def test_grids_are_bounded_at_parse_time():
    from lrisc_sim.grammar import MAX_CBR_VALUES, GridError, parse_cbr, parse_snr

    assert len(parse_snr("-100:100:0.02")) == 10001
    with pytest.raises(GridError, match="more than 10001 points"):
        parse_snr("-100:100:0.02,-99.99:99.99:0.02")
    assert len(parse_cbr(",".join(f"1/{i}" for i in range(2, 302)))) == 300  # cbr_list300 parses
    with pytest.raises(GridError, match=f"CBR list has {MAX_CBR_VALUES + 1} values"):
        parse_cbr(",".join(["1/2"] * (MAX_CBR_VALUES + 1)))
