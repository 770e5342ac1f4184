"""LRISC training (Algorithm 1): each stage lowers its loss on tiny crops; the CLI runs, resumes and ships."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from lrisc_sim.lrisc.config import preset, train_preset
from lrisc_sim.lrisc.model import LRISC
from lrisc_sim.lrisc.train import configure_train_parser, run_train, set_trainable, stage_loss

torch.set_num_threads(1)


def _smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_a_few_steps_lower_the_stage_loss(stage):
    torch.manual_seed(0)
    model = LRISC(preset("tiny"))
    tc = replace(train_preset("tiny"), warmup_steps=0, aux_weight=0.0, cbr_range=(1 / 16, 1 / 8))
    params = set_trainable(model, stage)
    opt = torch.optim.Adam(params, lr=3e-3)
    x = _smooth_images(2, 32)

    def loss(step: int, backward: bool) -> float:
        torch.manual_seed(123)  # same noise, timesteps, SNR and CBR every time: a deterministic objective
        out = stage_loss(model, stage, x, step, tc, perceptual=None, generator=torch.Generator().manual_seed(5))
        if backward:
            opt.zero_grad()
            out.total.backward()
            opt.step()
        return float(out.total.detach())

    before = loss(10_000, False)
    for _ in range(15):
        loss(10_000, True)
    after = loss(10_000, False)
    assert after < before, (stage, before, after)
    # only the stage's modules are trained
    trained = {id(p) for p in params}
    frozen = [p for p in model.parameters() if id(p) not in trained]
    assert all(not p.requires_grad for p in frozen)


def _folder(tmp_path, n=4, size=40):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size + 8, 3)) * 255).astype(np.uint8)).save(d / f"im{i}.png")
    return d


def _args(argv):
    p = argparse.ArgumentParser()
    configure_train_parser(p)
    return p.parse_args(argv)


def test_cli_three_stages_resume_and_ship(tmp_path, monkeypatch):
    data = _folder(tmp_path)
    out = tmp_path / "run"
    common = ["--preset", "tiny", "--data", str(data), "--val", "1", "--out", str(out), "--no-lpips",
              "--threads", "1", "--val-every", "2", "--val-steps", "1"]
    assert run_train(_args(["--stage", "1", "--steps", "2", *common])) == 0
    from lrisc_sim.train_state import read_state

    assert not (out / "stage1" / "state.pt").exists()
    tensors, doc = read_state(out / "stage1" / "state.safetensors")  # safetensors + JSON, no pickle
    assert doc["meta"]["step"] == 2 and "rng.cpu" in tensors and any(k.startswith("opt.") for k in tensors)
    # a longer run of the same stage resumes from the saved state
    assert run_train(_args(["--stage", "1", "--steps", "3", *common])) == 0
    card = json.loads((out / "stage1" / "lrisc_tiny_stage1.json").read_text())
    assert card["steps"] == 3 and card["stage"] == 1 and [h["step"] for h in card["history"]] == [2, 3]
    assert card["parameters"]["total"] == sum(p.numel() for p in LRISC(preset("tiny")).parameters())
    # every validation also exported the weights in the shipped format with a card of the run so far
    export = json.loads((out / "stage1" / "export.json").read_text())
    assert export["status"] == "final" and export["steps"] == 3 and export["cpu_hours"] >= 0
    assert [(h["step"], "d" in h["train"], "cpu_hours" in h) for h in export["history"]] == [(2, True, True),
                                                                                        (3, True, True)]
    exported = LRISC.load(out / "stage1" / "export.safetensors")
    final = LRISC.load(out / "stage1" / "lrisc_tiny_stage1.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(exported.state_dict().values(), final.state_dict().values()))
    import lrisc_sim.lrisc.codec as codec_mod

    monkeypatch.setattr(codec_mod, "CHECKPOINT_DIR", tmp_path / "ship")
    assert run_train(_args(["--stage", "2", "--steps", "2", *common])) == 0
    assert run_train(_args(["--stage", "3", "--steps", "2", "--ship", *common])) == 0
    card3 = json.loads((tmp_path / "ship" / "lrisc_tiny.json").read_text())
    assert card3["stage"] == 3 and [p["stage"] for p in card3["previous_stages"]] == [1, 2]
    assert "validation" in card3 and "psnr" in card3["validation"]
    m = LRISC.load(tmp_path / "ship" / "lrisc_tiny.safetensors")
    assert m.cfg.preset == "tiny"


def test_stage2_needs_stage1(tmp_path):
    data = _folder(tmp_path)
    with pytest.raises(ValueError, match="finish stage 1"):
        run_train(_args(["--stage", "2", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "r"),
                         "--no-lpips"]))


def test_init_partial_keeps_what_fits_and_names_the_rest(tmp_path, capsys):
    """--init-partial: the preset's architecture, each module of --init that fits whole; stage 1 only."""
    data = _folder(tmp_path)
    other = preset("tiny")
    old = LRISC(replace(other, unet=replace(other.unet, widths=(8, 8))))  # a g_d that does not fit the preset
    old.save(tmp_path / "old.safetensors")
    out = tmp_path / "r"
    common = ["--preset", "tiny", "--data", str(data), "--val", "1", "--out", str(out), "--no-lpips",
              "--threads", "1", "--val-every", "1", "--val-steps", "1", "--init", str(tmp_path / "old.safetensors")]
    assert run_train(_args(["--stage", "1", "--steps", "1", "--init-partial", *common])) == 0
    assert "fresh: g_d" in capsys.readouterr().out
    m = LRISC.load(out / "stage1" / "lrisc_tiny_stage1.safetensors")
    assert m.cfg.unet.widths == preset("tiny").unet.widths  # the preset's architecture, not the file's
    card = json.loads((out / "stage1" / "lrisc_tiny_stage1.json").read_text())
    assert "--init-partial" in card["command"]
    with pytest.raises(ValueError, match="for stage 1"):
        run_train(_args(["--stage", "2", "--init-partial", *common]))
    with pytest.raises(ValueError, match="needs --init"):
        run_train(_args(["--stage", "1", "--init-partial", *common[:-2]]))


def test_ema_weights_are_exported_and_resumed(tmp_path):
    """With --ema the exported weights are the EMA of the training weights, kept across a resume."""
    from lrisc_sim.train_state import read_state

    data = _folder(tmp_path)
    out = tmp_path / "r"
    common = ["--preset", "tiny", "--data", str(data), "--val", "1", "--out", str(out), "--no-lpips",
              "--threads", "1", "--val-every", "2", "--val-steps", "1", "--stage", "1", "--lr", "1e-2"]
    assert run_train(_args([*common, "--steps", "2", "--ema", "0.5"])) == 0
    tensors, doc = read_state(out / "stage1" / "state.safetensors")
    assert doc["meta"]["ema_updates"] == 2 and any(k.startswith("ema.") for k in tensors)
    assert run_train(_args([*common, "--steps", "4", "--ema", "0.5"])) == 0
    tensors, doc = read_state(out / "stage1" / "state.safetensors")
    assert doc["meta"]["ema_updates"] == 4  # continued, not restarted
    final = LRISC.load(out / "stage1" / "lrisc_tiny_stage1.safetensors").state_dict()
    raw = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
    w = "g_e.net.0.weight"
    assert torch.equal(final[w], ema[w]) and not torch.equal(final[w], raw[w])
    card = json.loads((out / "stage1" / "lrisc_tiny_stage1.json").read_text())
    assert card["ema_decay"] == 0.5 and "--ema 0.5" in card["command"]


def test_continue_from_an_export_on_a_new_machine(tmp_path, capsys):
    """--continue-from: without the state, a stage goes on from its committed export at the export's step, with
    its validation history and CPU-hours; mismatched exports get a one-line error."""
    import shutil

    data = _folder(tmp_path)
    common = ["--preset", "tiny", "--data", str(data), "--val", "1", "--no-lpips", "--threads", "1",
              "--val-every", "2", "--val-steps", "1", "--stage", "1"]
    assert run_train(_args([*common, "--out", str(tmp_path / "a"), "--steps", "2"])) == 0
    exp = tmp_path / "committed.safetensors"
    shutil.copy(tmp_path / "a" / "stage1" / "export.safetensors", exp)
    shutil.copy(tmp_path / "a" / "stage1" / "export.json", exp.with_suffix(".json"))
    before = json.loads(exp.with_suffix(".json").read_text())
    out = tmp_path / "b"  # a new machine: no state
    assert run_train(_args([*common, "--out", str(out), "--steps", "4", "--continue-from", str(exp)])) == 0
    assert "continuing" in capsys.readouterr().out
    card = json.loads((out / "stage1" / "lrisc_tiny_stage1.json").read_text())
    assert card["steps"] == 4 and [h["step"] for h in card["history"]] == [2, 4]
    assert card["history"][0] == before["history"][0]
    assert card["history"][1]["cpu_hours"] >= before["cpu_hours"]
    assert card["continued_from"]["step"] == 2 and "--continue-from" in card["command"]
    assert run_train(_args([*common, "--out", str(out), "--steps", "6", "--continue-from", str(exp)])) == 0
    assert "resuming the state" in capsys.readouterr().out  # the state here (step 4) is further along
    card = json.loads((out / "stage1" / "lrisc_tiny_stage1.json").read_text())
    assert [h["step"] for h in card["history"]] == [2, 4, 6]
    ahead = out / "stage1" / "export.safetensors"  # step 6, against the state of run "a" at step 2
    assert run_train(_args([*common, "--out", str(tmp_path / "a"), "--steps", "8", "--continue-from", str(ahead)])) == 0
    assert "ahead of the state here (step 2)" in capsys.readouterr().out
    card = json.loads((tmp_path / "a" / "stage1" / "lrisc_tiny_stage1.json").read_text())
    assert [h["step"] for h in card["history"]] == [2, 4, 6, 8]
    for extra, msg in ((["--steps", "2"], "raise --steps"), (["--steps", "4", "--init", str(exp)], "drop --init"),
                       (["--steps", "4", "--stage", "2"], "not an export of stage 2")):
        with pytest.raises(ValueError, match=msg):
            run_train(_args([*common, "--out", str(tmp_path / "c"), "--continue-from", str(exp), *extra]))
    wide = preset("tiny")
    LRISC(replace(wide, unet=replace(wide.unet, widths=(8, 8)))).save(tmp_path / "w.safetensors", before)
    with pytest.raises(ValueError, match="--init-partial"):
        run_train(_args([*common, "--out", str(tmp_path / "c"), "--steps", "4", "--continue-from",
                         str(tmp_path / "w.safetensors")]))


def test_a_continued_later_stage_resumes_without_the_previous_stage(tmp_path, capsys):
    """A stage > 1 continued from a committed export on a new machine, then interrupted, resumes its state with
    the same command: the previous stage's weights are not on that machine and are not needed."""
    import shutil

    data = _folder(tmp_path)
    common = ["--preset", "tiny", "--data", str(data), "--val", "1", "--no-lpips", "--threads", "1",
              "--val-every", "2", "--val-steps", "1"]
    assert run_train(_args([*common, "--stage", "1", "--out", str(tmp_path / "a"), "--steps", "2"])) == 0
    assert run_train(_args([*common, "--stage", "2", "--out", str(tmp_path / "a"), "--steps", "2"])) == 0
    exp = tmp_path / "committed.safetensors"
    shutil.copy(tmp_path / "a" / "stage2" / "export.safetensors", exp)
    shutil.copy(tmp_path / "a" / "stage2" / "export.json", exp.with_suffix(".json"))
    out = tmp_path / "b"  # a new machine: neither stage 1's weights nor a state of stage 2
    again = [*common, "--stage", "2", "--out", str(out), "--continue-from", str(exp)]
    assert run_train(_args([*again, "--steps", "4", "--max-minutes", "0"])) == 0  # stops at once, state saved
    assert (out / "stage2" / "state.safetensors").exists() and not (out / "stage1").exists()
    capsys.readouterr()
    assert run_train(_args([*again, "--steps", "4"])) == 0
    assert "resuming the state" in capsys.readouterr().out
    card = json.loads((out / "stage2" / "lrisc_tiny_stage2.json").read_text())
    assert card["steps"] == 4 and card["continued_from"]["step"] == 2


def test_lr_rewarms_after_a_continue():
    from lrisc_sim.lrisc.train import lr_at

    assert lr_at(0, 1000, 1.0) == pytest.approx(0.01) and lr_at(100, 1000, 1.0) == pytest.approx(1.0)
    assert lr_at(1000, 1000, 1.0) == pytest.approx(0.1)
    assert lr_at(500, 1000, 1.0, warm_from=500) == pytest.approx(lr_at(500, 1000, 1.0) / 100)
    assert lr_at(600, 1000, 1.0, warm_from=500) == pytest.approx(lr_at(600, 1000, 1.0))


def test_t_max_share_moves_that_share_to_the_last_step():
    """--t-max-share: about that share of the batch at n = N (index N - 1), the rest as sampled; any stage."""
    from lrisc_sim.lrisc.train import with_t_max

    model = LRISC(preset("tiny"))
    diff, n = model.diffusion, model.diffusion.cfg.num_train_timesteps
    index = torch.zeros(4000, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(with_t_max(index, replace(train_preset("tiny"), t_max_share=0.0), diff, g), index)
    moved = with_t_max(index, replace(train_preset("tiny"), t_max_share=0.25), diff, g)
    assert set(moved.tolist()) == {0, n - 1} and abs(float((moved == n - 1).float().mean()) - 0.25) < 0.03
    tc = replace(train_preset("tiny"), t_max_share=1.0, cbr_range=(1 / 16, 1 / 8))
    seen = []
    loss = diff.loss
    diff.loss = lambda x_est, target, idx: (seen.append(idx), loss(x_est, target, idx))[1]
    for stage in (1, 2, 3):  # every stage takes it
        stage_loss(model, stage, _smooth_images(2, 32), 10_000, tc, perceptual=None)
    assert len(seen) == 4 and all(bool((i == n - 1).all()) for i in seen)


def test_sample_steps_are_written_into_the_weights(tmp_path):
    """--sample-steps N: the written weights sample with N denoising steps by default (the codec's default)."""
    from lrisc_sim.lrisc.codec import LRISCCodec

    data = _folder(tmp_path)
    common = ["--preset", "tiny", "--data", str(data), "--val", "1", "--no-lpips", "--threads", "1",
              "--val-steps", "1", "--stage", "1", "--steps", "1", "--out", str(tmp_path / "r")]
    assert preset("tiny").diffusion.steps != 2
    assert run_train(_args([*common, "--sample-steps", "2"])) == 0
    m = LRISC.load(tmp_path / "r" / "stage1" / "lrisc_tiny_stage1.safetensors")
    assert m.cfg.diffusion.steps == 2 and LRISCCodec(m).steps == 2
    card = json.loads((tmp_path / "r" / "stage1" / "lrisc_tiny_stage1.json").read_text())
    assert "--sample-steps 2" in card["command"]
    with pytest.raises(ValueError, match="--sample-steps 0"):
        run_train(_args([*common, "--sample-steps", "0", "--no-resume"]))
