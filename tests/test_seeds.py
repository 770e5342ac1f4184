"""One rule for seeds (0 .. 2^32 - 1, channels.realization.check_seed) on every front-end; valid seeds keep their
realizations bit for bit (hostile cases seed_neg, seed_2p32, seed_huge, t_seed_neg, api_send_seed_neg)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from channels.realization import SEED_MAX, Realization, SeedError, check_seed, generator, image_key
from lrisc_sim.cli import main
from lrisc_sim.sweep_config import ConfigError, SweepConfig

BAD = [("seed_neg", -1), ("seed_2p32", 2**32), ("seed_huge", 10**30), ("bool", True), ("float", 1.5), ("str", "3")]


def test_check_seed_takes_exactly_the_32_bit_range():
    assert SEED_MAX == 4294967295
    for ok in (0, 1, 1234, SEED_MAX, np.uint32(SEED_MAX), np.int64(7)):
        assert check_seed(ok) == int(ok) and type(check_seed(ok)) is int
    for _, bad in BAD:
        with pytest.raises(SeedError, match=r"must be an integer in 0\.\.4294967295"):
            check_seed(bad)
    with pytest.raises(ValueError, match=r"^--seed -1: "):
        check_seed(-1, "--seed")


@pytest.mark.parametrize("seed", [0, 1, 1234, 2**31, SEED_MAX])
def test_valid_seeds_keep_their_realizations_bit_for_bit(seed):
    """The draws are those of the former rule (seed & 0xFFFFFFFF in the SeedSequence), so committed rows stay."""
    lo, hi = image_key("kodim01")
    old = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed & 0xFFFFFFFF, lo, hi, 2, 0])))
    ref = old.standard_normal(2 * 16, dtype=np.float32).reshape(16, 2) * np.float32(np.sqrt(0.5))
    got = Realization(seed, ["kodim01"], 2).cn("noise", 16)[0].numpy()
    assert np.array_equal(got, ref[:, 0] + 1j * ref[:, 1])
    assert generator(seed, "kodim01", 2, "noise").random() == \
        np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, lo, hi, 2, 0]))).random()


@pytest.mark.parametrize("case,seed", BAD[:3])
def test_seeds_outside_the_range_no_longer_alias(case, seed):
    with pytest.raises(SeedError):
        Realization(seed, ["a"], 0)
    with pytest.raises(SeedError):
        generator(seed, "a", 0, "noise")


@pytest.mark.parametrize("case,seed", BAD)
def test_sweep_config_refuses_the_seed(case, seed):
    cfg = SweepConfig(codecs=["uncoded"], snr_db=[10.0], cbr=[0.0625], dataset="x", seed=seed)
    with pytest.raises(ConfigError) as e:
        cfg.validate()
    assert e.value.field == "seed"
    SweepConfig(codecs=["uncoded"], snr_db=[10.0], cbr=[0.0625], dataset="x", seed=SEED_MAX).validate()


def _one_line(capsys, rc: int, *parts: str) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for p in parts:
        assert p in err, (p, err)
    return err


@pytest.mark.parametrize("case,seed", [("seed_neg", "-1"), ("seed_2p32", "4294967296"), ("seed_huge", str(10**30))])
def test_cli_sweep_refuses_the_seed_in_one_line(case, seed, tmp_path, capsys):
    rc = main(["sweep", "--no-progress", "--metrics", "psnr", "--dataset", str(tmp_path), "--codec", "uncoded",
               "--snr", "10", "--cbr", "1/16", "--out", str(tmp_path / "out"), "--threads", "1", "--seed", seed])
    _one_line(capsys, rc, "--seed", "0..4294967295", seed)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_cli_transmit_refuses_a_negative_seed(tmp_path, capsys):  # t_seed_neg
    from PIL import Image

    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    rc = main(["transmit", str(img), "--codec", "uncoded", "--cbr", "1/2", "--seed", "-1", "--out",
               str(tmp_path / "t"), "--threads", "1"])
    _one_line(capsys, rc, "--seed", "0..4294967295", "-1")
    assert not (tmp_path / "t").exists()


def test_api_send_and_transmit_refuse_the_seed():  # api_send_seed_neg
    from lrisc_sim.transmission import send, transmit

    x = torch.rand(1, 3, 16, 16)
    for seed in (-1, 2**32, 10**30):
        with pytest.raises(ValueError, match=r"seed .*0\.\.4294967295"):
            send("uncoded", x, 0.5, 10.0, seed=seed)
        with pytest.raises(ValueError, match=r"seed .*0\.\.4294967295"):
            transmit(x[0], codec="uncoded", cbr=0.5, seed=seed, device="cpu")
    a = send("uncoded", x, 0.5, 10.0, seed=SEED_MAX).output
    b = send("uncoded", x, 0.5, 10.0, seed=0).output
    assert not torch.equal(a, b)  # 2^32 - 1 is a seed of its own, not an alias
