"""The trainer's scaffolding: state file round trip and on-disk format, clock, timers, CPU-hours, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lrisc_sim import train_state
from lrisc_sim.train_state import EMA, TrainRun, card_cpu_hours, read_state, weights_for_export


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.PReLU(), torch.nn.Linear(3, 2))


def _trained(seed: int = 0):
    model = _net(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    return model, opt


def test_state_round_trip_restores_weights_optimizer_rng_and_progress(tmp_path):
    model, opt = _trained()
    ema = EMA(model, 0.9)
    ema.update(model)
    run = TrainRun(tmp_path / "s" / "state.safetensors", threads=2)
    run.step, run.elapsed = 3, 12.5
    run.record(train_loss=0.25)
    run.save(model, opt, ema.shadow, warm_from=1, prior_cpu_hours=0.5, config={"lr": 1e-2})
    want_next = torch.rand(3)  # the RNG state was saved before this draw

    fresh = _net(seed=1)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    back = TrainRun(tmp_path / "s" / "state.safetensors", threads=2)
    meta, ema_back, extra = back.resume(fresh, fresh_opt)
    assert (back.step, back.elapsed) == (3, 12.5) and back.history == run.history and extra == {}
    assert list(meta) == ["step", "elapsed", "history", "warm_from", "prior_cpu_hours", "config"]
    assert meta["warm_from"] == 1 and meta["config"] == {"lr": 1e-2}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert all(torch.equal(ema.shadow[k], ema_back[k]) for k in ema.shadow)
    a, b = opt.state_dict(), fresh_opt.state_dict()
    assert json.loads(json.dumps(a["param_groups"])) == b["param_groups"]  # betas come back as a list, as before
    for i in a["state"]:
        for key in a["state"][i]:
            assert torch.equal(torch.as_tensor(a["state"][i][key]), torch.as_tensor(b["state"][i][key]))
    assert torch.equal(torch.rand(3), want_next)


def test_on_disk_format_is_unchanged(tmp_path):
    """The layout the running trainings' state files have: resumable by old and new code alike."""
    model, opt = _trained()
    path = tmp_path / "state.safetensors"
    run = TrainRun(path, threads=1)
    run.step, run.elapsed = 7, 3.0
    run.save(model, opt, ema={"d": 0.1}, config={"stage": 1})  # LRISC's meta: "ema" holds loss averages
    tensors, doc = read_state(path)
    assert set(doc) == {"meta", "optimizer"}
    assert list(doc["meta"]) == ["step", "elapsed", "history", "ema", "config"]
    assert doc["meta"] == {"step": 7, "elapsed": 3.0, "history": [], "ema": {"d": 0.1}, "config": {"stage": 1}}
    assert set(doc["optimizer"]) == {"param_groups", "scalars"}
    names = {k.split(".")[0] for k in tensors}
    assert names == {"model", "opt", "rng"}  # no EMA weights given, none written
    assert {k for k in tensors if k.startswith("model.")} == {f"model.{k}" for k in model.state_dict()}
    assert "opt.0.exp_avg" in tensors and "opt.0.step" in tensors and "rng.cpu" in tensors
    # written by hand the way the trainers wrote it before TrainRun: read back the same
    train_state.save_state(tmp_path / "old.safetensors", model, opt, None,
                           meta={"step": 7, "elapsed": 3.0, "history": [], "ema": {"d": 0.1}, "config": {"stage": 1}})
    old_tensors, old_doc = read_state(tmp_path / "old.safetensors")
    assert old_doc == doc and set(old_tensors) == set(tensors)
    assert all(torch.equal(old_tensors[k], tensors[k]) for k in tensors)


def test_clock_timers_and_cpu_hours(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(train_state.time, "time", lambda: now[0])
    run = TrainRun("x.safetensors", threads=2, world=3, save_minutes=1, max_minutes=2, prior_cpu_hours=0.25)
    run.elapsed = 100.0  # resumed
    run.start()
    now[0] += 59
    assert run.lap() == 159 and not run.save_due() and not run.out_of_time()
    now[0] += 2
    assert run.save_due() and not run.out_of_time()
    run.mark_saved()
    assert not run.save_due()
    now[0] += 60
    assert run.out_of_time()
    run.lap()
    assert run.cpu_hours() == pytest.approx(0.25 + 221 * 2 * 3 / 3600)
    run.step = 4
    entry = run.record(val_psnr=20.0)
    assert list(entry) == ["step", "val_psnr", "seconds", "cpu_hours"] and entry["seconds"] == 221.0
    assert run.status(4) == "final" and run.status(5) == "in training (step 4 of 5)"
    assert TrainRun("x", threads=8, cuda=True, prior_cpu_hours=1.5).cpu_hours(3600) == 1.5
    assert not TrainRun("x", threads=1).out_of_time() and not TrainRun("x", threads=1).save_due()


def test_weights_for_export_and_card_cpu_hours():
    model, _ = _trained()
    assert weights_for_export(model) is model
    ema = EMA(model, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    out = weights_for_export(model, ema, lambda: _net(seed=3))
    assert out is not model and all(torch.equal(out.state_dict()[k], ema.shadow[k]) for k in ema.shadow)
    with pytest.raises(ValueError, match="build"):
        weights_for_export(model, ema)
    assert card_cpu_hours({"cpu_hours": 2.5, "wall_time_s": 1.0}) == 2.5
    assert card_cpu_hours({"wall_time_s": 3600.0, "threads": 2, "device": "cpu"}) == 2.0
    assert card_cpu_hours({"wall_time_s": 3600.0, "threads": 2, "device": "cuda"}) == 0.0
    assert card_cpu_hours(json.loads("{}")) == 0.0


def test_stop_on_signals_sets_the_flag_and_restores_the_handlers():
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    run = TrainRun("x", threads=1)
    with run.stop_on_signals():
        assert not run.out_of_time()
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread before the next bytecode
        assert run.stop_signal == signal.SIGTERM and run.out_of_time()
        assert run.stop_reason() == "on SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second signal stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    assert TrainRun("x", threads=1, max_minutes=3).stop_reason() == "after 3 min"


class SigtermTask:
    """A DeepJSCC task (see ``_sigterm_task``) that records each step it computes a loss for and sends itself
    SIGTERM during step ``STOP_AT``."""

    STOP_AT = 3
    steps: list[int] = []


def _sigterm_task():
    import os
    import signal

    from baselines.deepjscc_task import DeepJSCCTask

    class Task(DeepJSCCTask):
        def loss(self, model, batch, link, stage):
            SigtermTask.steps.append(batch.step)
            if batch.step == SigtermTask.STOP_AT:
                os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread before the next bytecode
            return super().loss(model, batch, link, stage)

    return Task


def test_sigterm_during_training_saves_the_step_it_reached(tmp_path, monkeypatch):
    """The trainer stopped by SIGTERM saves its state at the step it finished; the same recipe continues from
    there without losing or repeating a step."""
    from PIL import Image

    from lrisc_sim import recipe as recipe_mod
    from lrisc_sim.recipe import run_recipe

    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(recipe_mod, "task_class", lambda spec: _sigterm_task())
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(data / f"im{i}.png")
    p = tmp_path / "r.toml"
    p.write_text(f"""name = "sig"
codec = "deepjscc"
[model]
cbr = "1/16"
levels = 2
extra = 0
first_width = 8
width = 8
[data]
train = ["{data}"]
val = 1
val_crop = 32
[[stages]]
name = "a"
steps = 100000
batch = 2
crop = 32
warmup = 1
val_every = 100000
""")
    SigtermTask.steps.clear()
    msgs: list[str] = []
    card = run_recipe(p, threads=1, max_minutes=2, log=msgs.append)
    meta = read_state(tmp_path / "cache" / "train" / "sig" / "a.state.safetensors")[1]["meta"]
    assert meta["step"] == SigtermTask.STOP_AT + 1 == card["steps"]  # the step it was in was finished and saved
    assert any("stopped on SIGTERM" in m for m in msgs)
    p.write_text(p.read_text().replace("steps = 100000", f"steps = {meta['step'] + 2}"))
    card = run_recipe(p, threads=1, log=lambda *a: None)
    assert card["status"] == "final" and SigtermTask.steps == list(range(meta["step"] + 2))  # none lost or repeated


def test_safetensors_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    """The first byte of a safetensors file is its header length mod 256: 0x80 there is not a pickle (this
    refused a 1/24 DeepJSCC state whose history had grown to such a length)."""
    import pickle

    from safetensors.torch import save_file

    from lrisc_sim.safeio import CheckpointError, is_pickle, safetensors_metadata

    model, opt = _trained()
    path = tmp_path / "s.safetensors"
    for pad in range(400):  # grow the JSON meta until the header length is 128 mod 256
        train_state.save_state(path, model, opt, meta={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert read_state(path)[1]["meta"]["pad"] == "x" * pad
    weights = tmp_path / "w.safetensors"
    for pad in range(400):
        save_file({"a": torch.zeros(2)}, str(weights), metadata={"pad": "x" * pad})
        if weights.read_bytes()[0] == 0x80:
            break
    assert safetensors_metadata(weights, "checkpoint", "fix")["pad"] == "x" * pad
    # real pickles and torch.save archives are still refused before any parsing
    for data in (pickle.dumps({"a": 1}, protocol=2), pickle.dumps([1] * 50, protocol=4), b"PK\x03\x04" + b"\0" * 20):
        assert is_pickle(data[:9])
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(data)
        with pytest.raises(train_state.StateError, match="pickle"):
            read_state(bad)
        with pytest.raises(CheckpointError, match="pickle"):
            safetensors_metadata(bad, "checkpoint", "fix")
