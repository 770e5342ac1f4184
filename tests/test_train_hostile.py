"""Both trainers refuse nonsense before any work, refuse states and cards they cannot use, stop on a non-finite
loss, and never start afresh over saved work without --no-resume (hostile cases tr_dj_*, tr_lr_*; issue 29)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrisc_sim.cli import main
from lrisc_sim.train_checks import RULES, NonFiniteLoss, Rule, TrainOptionError, check_loss, validate_training_args
from lrisc_sim.train_state import read_state

torch.set_num_threads(1)
NAME = "deepjscc_cbr1-16_snr10"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).save(d / f"im{i}.png")
    return d


def dj(data: Path, tmp: Path, *extra: str) -> list[str]:
    """A one-step DeepJSCC run of a narrow model on 32 x 32 crops."""
    return ["train", "deepjscc", "--cbr", "1/16", "--data", str(data), "--val", "1", "--steps", "1",
            "--batch-size", "2", "--crop", "32", "--width", "8,8", "--val-every", "1", "--threads", "1",
            "--out", str(tmp / "dj"), "--state", str(tmp / "st.safetensors"), *extra]


def lr(data: Path, tmp: Path, *extra: str) -> list[str]:
    """A one-step LRISC stage 1 of the tiny preset."""
    return ["train", "lrisc", "--stage", "1", "--preset", "tiny", "--data", str(data), "--val", "1", "--steps", "1",
            "--no-lpips", "--threads", "1", "--val-steps", "1", "--crop", "32", "--batch-size", "2",
            "--out", str(tmp / "lr"), *extra]


def one_line(capsys, rc: int, *parts: str) -> str:
    """The command failed with exit status 2 and one line on stderr naming ``parts`` (progress bars of training
    that ran before are dropped: they end in a carriage return)."""
    err = capsys.readouterr().err.split("\r")[-1].strip()
    if "lrisc-sim: error" in err:
        err = err[err.index("lrisc-sim: error"):]
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("lrisc-sim: error: --") or err.startswith("lrisc-sim: error: /"), err
    for p in parts:
        assert p in err, (p, err)
    return err


# ------------------------------------------------------------------ options: refused before any work

def _file(tmp: Path) -> str:
    (tmp / "f").write_text("x")
    return str(tmp / "f")


def _folder(tmp: Path) -> str:
    (tmp / "d").mkdir()
    return str(tmp / "d")


OPTION_CASES = [  # (case, trainer, extra args (callables get tmp), what the message must say)
    ("tr_dj_steps0", dj, ["--steps", "0"], ["--steps 0", "integer >= 1"]),
    ("tr_dj_steps_neg", dj, ["--steps", "-5"], ["--steps -5", "integer >= 1"]),
    ("tr_dj_bs0", dj, ["--batch-size", "0"], ["--batch-size 0", "integer >= 1"]),
    ("tr_dj_crop0", dj, ["--crop", "0"], ["--crop 0", "integer >= 1"]),
    ("tr_dj_crop_odd", dj, ["--crop", "30"], ["--crop 30", "multiple of the downsampling factor 4"]),
    ("tr_dj_snr_nan", dj, ["--snr", "nan"], ["--snr nan", "[-100, 100]"]),
    ("tr_dj_snr_inf", dj, ["--snr", "0:inf"], ["--snr 0:inf", "[-100, 100]"]),
    ("tr_dj_lr_nan", dj, ["--lr", "nan"], ["--lr nan", "(0, 1]"]),
    ("tr_dj_lr_neg", dj, ["--lr", "-0.1"], ["--lr -0.1", "(0, 1]"]),
    ("tr_dj_ema_gt1", dj, ["--ema", "1.5"], ["--ema 1.5", "[0, 1)"]),
    ("tr_dj_ema_1", dj, ["--ema", "1"], ["--ema 1.0", "[0, 1)"]),
    ("tr_dj_val_every0", dj, ["--val-every", "0"], ["--val-every 0", "integer >= 1"]),
    ("tr_dj_extra_neg", dj, ["--extra", "-1"], ["--extra -1", "integer >= 0"]),
    ("tr_dj_minutes_neg", dj, ["--max-minutes", "-1"], ["--max-minutes -1.0", ">= 0"]),
    ("tr_dj_seed_neg", dj, ["--seed", "-1"], ["--seed -1", "0..4294967295"]),
    ("tr_dj_tpu", dj, ["--device", "tpu"], ["--device tpu", "cpu, cuda or cuda:N"]),
    ("tr_dj_out_file", dj, ["--out", _file], ["--out", "exists and is not a folder"]),
    ("tr_dj_state_dir", dj, ["--state", _folder], ["--state", "is a folder; give a file path"]),
    ("tr_dj_losslog_dir", dj, ["--loss-log", _folder], ["--loss-log", "is a folder"]),
    ("tr_dj_evalkodak_missing", dj, ["--eval-kodak", "/nonexistent"], ["--eval-kodak /nonexistent", "no such folder"]),
    ("tr_dj_resume_and_no", dj, ["--resume", "--no-resume"], ["--resume and --no-resume"]),
    ("tr_lr_steps0", lr, ["--steps", "0"], ["--steps 0", "integer >= 1"]),
    ("tr_lr_bs0", lr, ["--batch-size", "0"], ["--batch-size 0", "integer >= 1"]),
    ("tr_lr_val_every0", lr, ["--val-every", "0"], ["--val-every 0", "integer >= 1"]),
    ("tr_lr_ema_gt1", lr, ["--ema", "2"], ["--ema 2.0", "[0, 1)"]),
    ("tr_lr_tmax2", lr, ["--t-max-share", "2"], ["--t-max-share 2.0", "[0, 1]"]),
    ("tr_lr_eta_neg", lr, ["--eta", "-0.5"], ["--eta -0.5", "[0, 1]"]),
    ("tr_lr_lr_inf", lr, ["--lr", "inf"], ["--lr inf", "(0, 1]"]),
    ("tr_lr_minutes_neg", lr, ["--max-minutes", "-1"], ["--max-minutes -1.0", ">= 0"]),
    ("tr_lr_save_minutes0", lr, ["--save-minutes", "0"], ["--save-minutes 0.0", "> 0"]),
    ("tr_lr_seed_2p32", lr, ["--seed", "4294967296"], ["--seed 4294967296", "0..4294967295"]),
    ("tr_lr_tpu", lr, ["--device", "tpu"], ["--device tpu", "cpu, cuda or cuda:N"]),
    ("tr_lr_out_file", lr, ["--out", _file], ["--out", "exists and is not a folder"]),
    ("tr_lr_resume_and_no", lr, ["--resume", "--no-resume"], ["--resume and --no-resume"]),
    ("tr_lr_lam_start_no_lam", lr, ["--lam", "0", "--lam-start", "0.1", "--lam-ramp", "0.5"], ["--lam 0", "> 0"]),
]


@pytest.mark.parametrize("case,trainer,extra,says", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_nonsense_options_are_refused_in_one_line_before_any_work(case, trainer, extra, says, data, tmp_path,
                                                                   capsys):
    args = [a(tmp_path) if callable(a) else a for a in extra]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(trainer(data, tmp_path, *args))
    one_line(capsys, rc, *says)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written: no state, export, run folder


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_naming_the_fix(device, data, tmp_path, capsys):  # tr_dj_cuda
    for trainer in (dj, lr):
        one_line(capsys, main(trainer(data, tmp_path, "--device", device)), f"--device {device}", "no CUDA GPU",
                 "use --device cpu")


def test_the_rules_are_one_table_with_stated_ranges():
    """One rule per option, shared by both trainers; each message states the range it checks."""
    assert Rule("int", 1).describe() == "must be an integer >= 1"
    assert Rule("float", 0, 1, hi_open=True).describe() == "must lie in [0, 1)"
    assert Rule("float", 0, 1, lo_open=True).describe() == "must lie in (0, 1]"
    assert Rule("float", 0, lo_open=True).describe() == "must be a finite number > 0"
    ok = {"steps": 1, "ema": 0.0, "t_max_share": 1.0, "lr": 1.0, "max_minutes": 0.0, "extra": 0, "snr": -100}
    validate_training_args(ok, device="cpu", seed=0)
    for name, bad in (("steps", 1.0), ("steps", True), ("ema", 1.0), ("ema", -1e-9), ("t_max_share", 1.0000001),
                      ("lr", 0.0), ("lr", float("nan")), ("max_minutes", -1e-9), ("snr", 100.5), ("extra", -1)):
        with pytest.raises(TrainOptionError, match=f"^--{name.replace('_', '-')} "):
            validate_training_args({**ok, name: bad})
    assert RULES["ema"].ok(0.999) and not RULES["ema"].ok(float("inf"))


def test_a_non_finite_loss_stops_naming_the_step(data, tmp_path, monkeypatch, capsys):
    """DeepJSCC stops at the first NaN loss (it exported NaN weights as 'final' before), nothing exported."""
    with pytest.raises(NonFiniteLoss, match="at step 3"):
        check_loss(float("inf"), 3)
    check_loss(0.5, 3)
    from baselines import deepjscc

    forward = deepjscc.DeepJSCC.forward
    monkeypatch.setattr(deepjscc.DeepJSCC, "forward", lambda self, *a, **k: forward(self, *a, **k) * float("nan"))
    rc = main(dj(data, tmp_path, "--steps", "3"))
    err = capsys.readouterr().err.strip().splitlines()[-1]  # the last line: the progress bar was closed before
    assert rc == 2 and err.startswith("lrisc-sim: error: the training loss became nan at step 1;"), err
    assert not (tmp_path / "dj" / f"{NAME}.safetensors").exists() and not (tmp_path / "st.safetensors").exists()


# ------------------------------------------------------------------ states and cards it cannot use

def _edit_state(path: Path, doc_fn=None, tensor_fn=None) -> None:
    from safetensors.torch import save_file

    tensors, doc = read_state(path)
    if doc_fn:
        doc_fn(doc)
    if tensor_fn:
        tensor_fn(tensors)
    save_file(tensors, str(path), metadata={"state": json.dumps(doc)})


def _set_meta(key, value):
    return lambda doc: doc["meta"].__setitem__(key, value)


STATE_CASES = [
    ("tr_dj_resume_meta_step", dict(doc_fn=_set_meta("step", "abc")), ["its 'step' is \"abc\"", "--no-resume"]),
    ("tr_dj_resume_meta_neg", dict(doc_fn=_set_meta("step", 10**9)),
     ["at step 1000000000, beyond --steps 2", "raise --steps", "--no-resume"]),
    ("tr_dj_resume_meta_nostep", dict(doc_fn=lambda d: d["meta"].pop("history")), ["lacks 'history'"]),
    ("tr_dj_resume_meta_pg", dict(doc_fn=lambda d: d["optimizer"].__setitem__("param_groups", [{"x": 1}, 7])),
     ["optimizer state does not fit", "--no-resume"]),
    ("tr_dj_resume_meta_sched", dict(doc_fn=_set_meta("schedule", "soon")), ["'schedule'", "[step, steps] pairs"]),
    ("tr_dj_resume_rng", dict(tensor_fn=lambda t: t.__setitem__("rng.cpu", torch.zeros(10, dtype=torch.uint8))),
     ["RNG state does not fit", "--no-resume"]),
]


@pytest.fixture(scope="module")
def dj_run(data, tmp_path_factory) -> Path:
    """A finished one-step DeepJSCC run: its folder holds st.safetensors and dj/NAME.{safetensors,json}."""
    tmp = tmp_path_factory.mktemp("dj_run")
    assert main(dj(data, tmp)) == 0
    return tmp


def _copy_run(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst, dirs_exist_ok=True)


@pytest.mark.parametrize("case,edit,says", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_states_it_cannot_use_are_refused_naming_the_file(case, edit, says, data, dj_run, tmp_path, capsys):
    _copy_run(dj_run, tmp_path)
    state = tmp_path / "st.safetensors"
    _edit_state(state, **edit)
    kept = state.read_bytes()
    one_line(capsys, main(dj(data, tmp_path, "--steps", "2")), str(state), *says)
    assert state.read_bytes() == kept  # left as it was


def test_a_garbage_card_beside_the_exported_weights_is_named(data, dj_run, tmp_path, capsys):
    """tr_dj_resume_card_garbage: no state, the export's JSON card is garbage."""
    _copy_run(dj_run, tmp_path)
    (tmp_path / "st.safetensors").unlink()
    card = tmp_path / "dj" / f"{NAME}.json"
    for garbage in ("{'steps': 1,", "[1, 2]", '{"steps": "many"}', '{"validation": 3}'):
        card.write_text(garbage)
        for extra in ([], ["--resume"]):
            one_line(capsys, main(dj(data, tmp_path, "--steps", "2", *extra)), str(card), "--no-resume")
        assert card.read_text() == garbage


def test_lrisc_state_without_its_loss_averages_is_named(data, tmp_path, capsys):  # tr_lr_resume_noema
    assert main(lr(data, tmp_path)) == 0
    state = tmp_path / "lr" / "stage1" / "state.safetensors"
    _edit_state(state, doc_fn=lambda d: d["meta"].pop("ema"))
    one_line(capsys, main(lr(data, tmp_path, "--steps", "2")), str(state), "lacks 'ema'", "--no-resume")
    _edit_state(state, doc_fn=_set_meta("ema", "x"))
    one_line(capsys, main(lr(data, tmp_path, "--steps", "2")), str(state), "'ema'", "JSON object of numbers")
    _edit_state(state, doc_fn=_set_meta("ema", {"loss": 1.0}))
    assert main(lr(data, tmp_path, "--steps", "2")) == 0  # repaired: it resumes


def test_lrisc_continue_from_with_a_pickle_state_here_is_refused(data, tmp_path, capsys):
    """tr_lr_continue_state_pickle: the state here is read with the pickle check like every other loader."""
    assert main(lr(data, tmp_path / "a")) == 0
    export = tmp_path / "a" / "lr" / "stage1" / "export.safetensors"
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = tmp_path / "lr" / "stage1" / "state.safetensors"
    state.parent.mkdir(parents=True)
    state.write_bytes(pickle.dumps({"meta": Evil()}))
    one_line(capsys, main(lr(data, tmp_path, "--steps", "3", "--continue-from", str(export))), str(state), "pickle",
             "never loaded")
    assert not marker.exists()


def test_lrisc_garbage_continue_card_is_named(data, tmp_path, capsys):
    assert main(lr(data, tmp_path / "a")) == 0
    export = tmp_path / "a" / "lr" / "stage1" / "export.safetensors"
    export.with_suffix(".json").write_text("{not json")
    one_line(capsys, main(lr(data, tmp_path, "--steps", "3", "--continue-from", str(export))),
             str(export.with_suffix(".json")), "not a JSON model card")


# ------------------------------------------------------------------ no lost work

def _steps_in_log(log: Path) -> list[int]:
    return [int(line.split()[0]) for line in log.read_text().splitlines()]


def test_the_same_deepjscc_command_again_continues(data, tmp_path, capsys):
    """tr_dj_rerun_no_resume: the same command again resumes (state and export kept); only --no-resume starts
    afresh, and says what it overwrites."""
    log = tmp_path / "loss.txt"
    run = lambda steps: dj(data, tmp_path, "--steps", str(steps), "--val-every", "2", "--loss-log", str(log))  # noqa
    cmd = run(2)
    assert main(cmd) == 0
    card = json.loads((tmp_path / "dj" / f"{NAME}.json").read_text())
    assert card["steps"] == 2 and card["status"] == "final"
    capsys.readouterr()
    assert main(cmd) == 0  # nothing left to train: the state and the export stay at step 2
    assert "resumed" in capsys.readouterr().out
    assert read_state(tmp_path / "st.safetensors")[1]["meta"]["step"] == 2 and _steps_in_log(log) == [1, 2]
    assert main(run(4)) == 0  # a longer run
    assert _steps_in_log(log) == [1, 2, 3, 4]
    hist = json.loads((tmp_path / "dj" / f"{NAME}.json").read_text())["validation"]["history"]
    assert [h["step"] for h in hist] == [2, 4]
    # the state gone (another machine): the exported weights are continued, not overwritten
    (tmp_path / "st.safetensors").unlink()
    capsys.readouterr()
    assert main(run(6)) == 0
    assert "continuing from the exported weights" in capsys.readouterr().out
    assert [h["step"] for h in json.loads((tmp_path / "dj" / f"{NAME}.json").read_text())["validation"]["history"]] \
        == [2, 4, 6]
    # a state of another --out is not taken over silently
    other = dj(data, tmp_path, "--steps", "6", "--out", str(tmp_path / "elsewhere"))
    one_line(capsys, main(other), "st.safetensors", "is the state of the run exporting to", "--no-resume")
    # --no-resume: afresh, saying what it overwrites
    assert main([*cmd, "--no-resume"]) == 0
    out = capsys.readouterr().out
    assert "starting afresh (--no-resume): overwriting" in out and "st.safetensors" in out
    assert read_state(tmp_path / "st.safetensors")[1]["meta"]["step"] == 2
    assert [h["step"] for h in json.loads((tmp_path / "dj" / f"{NAME}.json").read_text())["validation"]["history"]] \
        == [2]


def test_sigint_then_the_same_command_continues_at_that_step(data, tmp_path, capsys):
    """tr_dj_sigint_rerun: Ctrl-C saves the state; the same command (no --resume) continues without losing or
    repeating a step."""
    log = tmp_path / "loss.txt"
    cmd = dj(data, tmp_path, "--steps", "100000", "--val-every", "100000", "--loss-log", str(log))

    def interrupt_after(n: int) -> None:
        def go():
            while not (log.is_file() and len(log.read_text().splitlines()) >= n):
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=go, daemon=True).start()

    interrupt_after(2)
    assert main(cmd) == 0
    first = read_state(tmp_path / "st.safetensors")[1]["meta"]["step"]
    assert first >= 2 and "run the same command again to continue" in capsys.readouterr().out
    interrupt_after(first + 2)
    assert main(cmd) == 0
    second = read_state(tmp_path / "st.safetensors")[1]["meta"]["step"]
    assert second >= first + 2 and _steps_in_log(log) == list(range(1, second + 1))


def test_lrisc_export_without_state_is_continued_not_overwritten(data, tmp_path, capsys):
    """The LRISC trainer behaves the same way: an export of the stage without its state is continued by the same
    command; a finished one, or --init as well, is a one-line error; --no-resume starts afresh."""
    cmd = lr(data, tmp_path, "--steps", "2", "--val-every", "2")
    assert main(cmd) == 0
    sdir = tmp_path / "lr" / "stage1"
    (sdir / "state.safetensors").unlink()
    one_line(capsys, main(cmd), "export.safetensors", "finished at step 2", "raise --steps", "--no-resume")
    longer = lr(data, tmp_path, "--steps", "3", "--val-every", "2")
    capsys.readouterr()
    assert main(longer) == 0
    assert "continuing from it" in capsys.readouterr().out
    card = json.loads((sdir / "lrisc_tiny_stage1.json").read_text())
    assert [h["step"] for h in card["history"]] == [2, 3]
    (sdir / "state.safetensors").unlink()
    one_line(capsys, main([*lr(data, tmp_path, "--steps", "4"), "--init", str(sdir / "export.safetensors")]),
             "drop --init", "--no-resume")
    assert main([*cmd, "--no-resume"]) == 0
    card = json.loads((sdir / "lrisc_tiny_stage1.json").read_text())
    assert [h["step"] for h in card["history"]] == [2]
