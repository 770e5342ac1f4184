"""`lrisc-sim train RECIPE.toml` refuses nonsense before any work, refuses states and cards it cannot use, stops
on a non-finite loss, and never starts afresh over saved work without --fresh (hostile cases tr_dj_*, tr_lr_*
of issue 29, ported from the two old trainers' flags to recipe keys and the command's options)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from baselines.deepjscc_task import DeepJSCCTask
from lrisc_sim.cli import main
from lrisc_sim.train_checks import RULES, NonFiniteLoss, Rule, TrainOptionError, check_loss, validate_training_args
from lrisc_sim.train_state import read_state

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).save(d / f"im{i}.png")
    return d


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def dj(tmp: Path, data: Path, stage: str = "", model: str = "", head: str = "", steps: int = 1,
       codec: str = "deepjscc") -> Path:
    """A DeepJSCC recipe of a narrow model (d = 4) on 32 x 32 crops, one step by default."""
    p = tmp / "dj.toml"
    p.write_text(f"""name = "dj"
codec = "{codec}"
{head}
[model]
cbr = "1/16"
width = 8
first_width = 8
{model}
[data]
train = ["{data}"]
val = 1
val_crop = 32
[defaults]
batch = 2
crop = 32
val_every = 1
[[stages]]
name = "a"
steps = {steps}
{stage}
""")
    return p


def lr(tmp: Path, data: Path, stage: str = "") -> Path:
    """A one-step LRISC stage 1 of the tiny preset."""
    p = tmp / "lr.toml"
    p.write_text(f"""name = "lr"
codec = "lrisc"
[model]
preset = "tiny"
[data]
train = ["{data}"]
val = 1
val_crop = 32
[defaults]
modules = "source"
batch = 2
crop = 32
lpips = false
val_steps = 1
[[stages]]
name = "s1"
steps = 1
{stage}
""")
    return p


def train(recipe: Path, *extra: str) -> int:
    return main(["train", str(recipe), "--threads", "1", *extra])


def one_line(capsys, rc: int, *parts: str) -> str:
    """The command failed with exit status 2 and one line on stderr naming ``parts`` (progress bars of training
    that ran before are dropped: they end in a carriage return)."""
    err = capsys.readouterr().err.split("\r")[-1].strip()
    if "lrisc-sim: error" in err:
        err = err[err.index("lrisc-sim: error"):]
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("lrisc-sim: error: "), err
    for p in parts:
        assert p in err, (p, err)
    return err


# ------------------------------------------------------------------ options: refused before any work

OPTION_CASES = [  # (case, recipe, its stage / model lines or command options, what the message must say)
    ("tr_dj_steps0", dj, {"steps": 0}, ["steps = 0", "integer >= 1"]),
    ("tr_dj_steps_neg", dj, {"steps": -5}, ["steps = -5", "integer >= 1"]),
    ("tr_dj_bs0", dj, {"stage": "batch = 0"}, ["batch = 0", "integer >= 1"]),
    ("tr_dj_crop0", dj, {"stage": "crop = 0"}, ["crop = 0", "integer >= 1"]),
    ("tr_dj_crop_odd", dj, {"stage": "crop = 30"}, ["crop 30 must be a multiple of 4"]),
    ("tr_dj_snr_nan", dj, {"stage": 'snr = "nan"'}, ["bad training SNR 'nan'"]),
    ("tr_dj_snr_inf", dj, {"stage": 'snr = "0:inf"'}, ["bad training SNR '0:inf'", "finite"]),
    ("tr_dj_lr_nan", dj, {"stage": "lr = nan"}, ["lr = nan", "(0, 1]"]),
    ("tr_dj_lr_neg", dj, {"stage": "lr = -0.1"}, ["lr = -0.1", "(0, 1]"]),
    ("tr_dj_ema_gt1", dj, {"stage": "ema = 1.5"}, ["ema = 1.5", "[0, 1)"]),
    ("tr_dj_ema_1", dj, {"stage": "ema = 1.0"}, ["ema = 1.0", "[0, 1)"]),
    ("tr_dj_val_every0", dj, {"stage": "val_every = 0"}, ["val_every = 0", "integer >= 1"]),
    ("tr_dj_extra_neg", dj, {"model": "extra = -1"}, ["extra = -1", "0..8"]),
    ("tr_dj_seed_neg", dj, {"stage": "seed = -1"}, ["seed = -1", "0 .. 2^32 - 1"]),
    ("tr_dj_seed_2p32", dj, {"stage": "seed = 4294967296"}, ["seed = 4294967296", "0 .. 2^32 - 1"]),
    ("tr_dj_save_minutes0", dj, {"stage": "save_minutes = 0"}, ["save_minutes = 0", "> 0"]),
    ("tr_dj_channel", dj, {"stage": 'channel = "warp"'}, ["warp"]),
    ("tr_dj_equalizer", dj, {"stage": 'equalizer = "perfect"'}, ["equalizer = 'perfect'", "mmse or zf"]),
    ("tr_dj_unknown_option", dj, {"stage": "width_mult = 2"}, ["width_mult", "unknown deepjscc stage option"]),
    ("tr_dj_data_missing", dj, {"data": "/nonexistent"}, ["/nonexistent", "no such folder"]),
    ("tr_dj_ship_dir", dj, {"head": lambda t: f'ship = "{t}"'}, ["ship =", ".safetensors file"]),
    ("tr_dj_carry_file", dj, {"head": lambda t: f'carry = "{t / "dj.toml"}"'}, ["carry =", "not a folder"]),
    ("tr_dj_init_missing", dj, {"stage": 'init = "/nonexistent.safetensors"'}, ["init /nonexistent", "not found"]),
    ("tr_dj_minutes_neg", dj, {"cli": ["--max-minutes", "-1"]}, ["--max-minutes -1.0", ">= 0"]),
    ("tr_dj_threads0", dj, {"cli": ["--threads", "0"]}, ["--threads 0"]),
    ("tr_dj_tpu", dj, {"cli": ["--device", "tpu"]}, ["--device tpu", "cpu, cuda or cuda:N"]),
    ("tr_dj_no_stage", dj, {"cli": ["--stage", "zz"]}, ["no stage 'zz'", "stages: a"]),
    ("tr_lr_tmax2", lr, {"stage": "t_max_share = 2"}, ["t_max_share = 2", "0..1"]),
    ("tr_lr_eta_neg", lr, {"stage": "eta = -0.5"}, ["eta = -0.5", "0..1"]),
    ("tr_lr_lr_inf", lr, {"stage": "lr = inf"}, ["lr = inf", "(0, 1]"]),
    ("tr_lr_modules", lr, {"stage": 'modules = "g_e"'}, ["modules = 'g_e'", "source, jscc or all"]),
    ("tr_lr_lam_start_no_lam", lr, {"stage": "lam = 0\nlam_start = 0.1\nlam_ramp = 0.5"}, ["lam_start", "lam > 0"]),
    ("tr_lr_tpu", lr, {"cli": ["--device", "tpu"]}, ["--device tpu", "cpu, cuda or cuda:N"]),
]


@pytest.mark.parametrize("case,recipe,edit,says", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_nonsense_is_refused_in_one_line_before_any_work(case, recipe, edit, says, data, tmp_path, cache, capsys):
    kw = {k: (v(tmp_path) if callable(v) else v) for k, v in edit.items() if k in ("stage", "model", "head", "steps")}
    p = recipe(tmp_path, Path(edit["data"]) if "data" in edit else data, **kw)
    one_line(capsys, train(p, *edit.get("cli", [])), *says)
    assert not list(cache.rglob("*.safetensors"))  # nothing written: no state, no export


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_naming_the_fix(device, data, tmp_path, capsys):  # tr_dj_cuda
    for recipe in (dj, lr):
        one_line(capsys, train(recipe(tmp_path, data), "--device", device), f"--device {device}", "no CUDA GPU",
                 "use --device cpu")


def test_the_rules_are_one_table_with_stated_ranges():
    """One rule per option; each message states the range it checks."""
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


def test_a_non_finite_loss_stops_naming_the_step(data, tmp_path, cache, monkeypatch, capsys):
    """DeepJSCC stops at the first NaN loss (the old trainer exported NaN weights as 'final'), nothing exported."""
    with pytest.raises(NonFiniteLoss, match="at step 3"):
        check_loss(float("inf"), 3)
    check_loss(0.5, 3)
    from baselines import deepjscc

    decode = deepjscc.DeepJSCC.decode
    monkeypatch.setattr(deepjscc.DeepJSCC, "decode", lambda self, *a, **k: decode(self, *a, **k) * float("nan"))
    rc = train(dj(tmp_path, data, steps=3))
    err = capsys.readouterr().err.strip().splitlines()[-1]  # the last line: the progress bar was closed before
    assert rc == 2 and err.startswith("lrisc-sim: error: the training loss became nan at step 1;"), err
    assert not list(cache.rglob("*.safetensors"))


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
    ("tr_dj_resume_meta_step", dict(doc_fn=_set_meta("step", "abc")), ["its 'step' is \"abc\"", "--fresh"]),
    ("tr_dj_resume_meta_big", dict(doc_fn=_set_meta("step", 10**9)),
     ["at step 1000000000, beyond the stage's steps = 2", "raise steps in the recipe", "--fresh"]),
    ("tr_dj_resume_meta_nohistory", dict(doc_fn=lambda d: d["meta"].pop("history")), ["lacks 'history'"]),
    ("tr_dj_resume_meta_noloss", dict(doc_fn=lambda d: d["meta"].pop("loss_avg")), ["lacks 'loss_avg'", "--fresh"]),
    ("tr_dj_resume_meta_loss_x", dict(doc_fn=_set_meta("loss_avg", "x")), ["'loss_avg'", "JSON object of numbers"]),
    ("tr_dj_resume_meta_stage", dict(doc_fn=_set_meta("stage", "b")), ["state of stage b, not a", "--fresh"]),
    ("tr_dj_resume_meta_pg", dict(doc_fn=lambda d: d["optimizer"].__setitem__("param_groups", [{"x": 1}, 7])),
     ["optimizer state does not fit", "--fresh"]),
    ("tr_dj_resume_rng", dict(tensor_fn=lambda t: t.__setitem__("rng.cpu", torch.zeros(10, dtype=torch.uint8))),
     ["RNG state does not fit", "--fresh"]),
]


@pytest.mark.parametrize("case,edit,says", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_states_it_cannot_use_are_refused_naming_the_file(case, edit, says, data, tmp_path, cache, capsys):
    assert train(dj(tmp_path, data)) == 0
    state = cache / "train" / "dj" / "a.state.safetensors"
    _edit_state(state, **edit)
    kept = state.read_bytes()
    one_line(capsys, train(dj(tmp_path, data, steps=2)), str(state), *says)
    assert state.read_bytes() == kept  # left as it was


def _carried(tmp: Path, data: Path, cache: Path) -> tuple[Path, Path]:
    """A recipe stopped after its first of two steps on one machine, its export carried; then a new machine."""
    p = dj(tmp, data, steps=2, head=f'carry = "{tmp / "carry"}"')
    assert train(p, "--max-minutes", "0") == 0
    shutil.rmtree(cache)
    return p, tmp / "carry" / "dj.a.json"


def test_a_garbage_card_of_a_carried_export_is_named(data, tmp_path, cache, capsys):
    """tr_dj_resume_card_garbage: no state, the carried export's JSON card is garbage or of another stage."""
    p, card = _carried(tmp_path, data, cache)
    for garbage, says in (("{'steps': 1,", "not a JSON model card"), ("[1, 2]", "not a JSON model card"),
                          ('{"steps": "many"}', "not an export of stage a"),
                          ('{"stage": {"name": "b"}, "history": [], "steps": 1}', "not an export of stage a")):
        card.write_text(garbage)
        one_line(capsys, train(p), str(card).replace(".json", ""), says, "delete it")
        assert card.read_text() == garbage


def test_a_pickle_state_beside_a_carried_export_is_refused(data, tmp_path, cache, capsys):
    """tr_lr_continue_state_pickle: the state here is read with the pickle check like every other loader."""
    p, _ = _carried(tmp_path, data, cache)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = cache / "train" / "dj" / "a.state.safetensors"
    state.parent.mkdir(parents=True)
    state.write_bytes(pickle.dumps({"meta": Evil()}))
    one_line(capsys, train(p), str(state), "pickle", "never loaded")
    assert not marker.exists()


# ------------------------------------------------------------------ no lost work

def _history(cache: Path) -> list[int]:
    return [h["step"] for h in json.loads((cache / "train" / "dj" / "a.json").read_text())["history"]]


def test_the_same_command_again_continues_and_only_fresh_overwrites(data, tmp_path, cache, capsys):
    """tr_dj_rerun_no_resume: the same command again changes nothing; a longer stage resumes; without the state
    the export is continued, never overwritten, also when the recipe asks for fewer steps; only --fresh starts
    afresh, and says what it overwrites."""
    state = cache / "train" / "dj" / "a.state.safetensors"
    p = dj(tmp_path, data, steps=2, stage="val_every = 2")
    assert train(p) == 0 and _history(cache) == [2]
    capsys.readouterr()
    assert train(p) == 0  # nothing left to train: the state and the export stay at step 2
    assert "stage a: done" in capsys.readouterr().out
    assert read_state(state)[1]["meta"]["step"] == 2
    p = dj(tmp_path, data, steps=4, stage="val_every = 2")
    assert train(p) == 0 and _history(cache) == [2, 4]  # a longer run resumes
    state.unlink()  # the state lost: the export is continued
    p = dj(tmp_path, data, steps=6, stage="val_every = 2")
    capsys.readouterr()
    assert train(p) == 0
    assert "continuing the export" in capsys.readouterr().out and _history(cache) == [2, 4, 6]
    p = dj(tmp_path, data, steps=2, stage="val_every = 2")
    assert train(p) == 0 and "stage a: done" in capsys.readouterr().out  # its export has at least those steps
    assert _history(cache) == [2, 4, 6]
    assert train(p, "--fresh") == 0
    out = capsys.readouterr().out
    assert "starting afresh (--fresh): overwriting" in out and str(state) in out
    assert read_state(state)[1]["meta"]["step"] == 2 and _history(cache) == [2]


class SigintTask(DeepJSCCTask):
    """DeepJSCC that records the steps it computes and sends itself SIGINT (Ctrl-C) during step ``STOP_AT``."""

    STOP_AT = -1
    steps: list[int] = []

    def loss(self, model, batch, link, stage):
        SigintTask.steps.append(batch.step)
        if batch.step == SigintTask.STOP_AT:
            os.kill(os.getpid(), signal.SIGINT)
        return super().loss(model, batch, link, stage)


def test_sigint_then_the_same_command_continues_at_that_step(data, tmp_path, cache, capsys):
    """tr_dj_sigint_rerun: Ctrl-C saves the state; the same command continues without losing or repeating a step."""
    p = dj(tmp_path, data, steps=100_000, stage="val_every = 100000", codec="tests.test_train_hostile:SigintTask")
    SigintTask.steps.clear()
    SigintTask.STOP_AT = 2
    assert train(p) == 0
    first = read_state(cache / "train" / "dj" / "a.state.safetensors")[1]["meta"]["step"]
    assert first == 3 and "run the same command again to continue" in capsys.readouterr().out
    SigintTask.STOP_AT = first + 1
    assert train(p) == 0
    second = read_state(cache / "train" / "dj" / "a.state.safetensors")[1]["meta"]["step"]
    assert second == first + 2 and SigintTask.steps == list(range(second))
