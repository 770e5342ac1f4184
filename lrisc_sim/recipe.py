"""Training recipes as files: ``lrisc-sim train RECIPE.toml`` runs a recipe's stages in order, resumably.

A recipe names the codec to train, its model options, the data, and its stages (each a
:class:`~lrisc_sim.trainer.StageConfig`: steps, batch, crop, learning rate, EMA, channel and SNR range, the
codec's loss options). Schema::

    name = "deepjscc_cbr1-48_rayleigh"     # the run: its state lives in <cache>/train/NAME/ (outside the tree)
    codec = "deepjscc"                     # a trainable codec: deepjscc, lrisc, or a plugin's TrainTask
    ship = "lrisc_sim/checkpoints/deepjscc/deepjscc_cbr1-48_rayleigh.safetensors"  # where the result goes
    carry = "training/deepjscc_rayleigh"   # optional: the running stage's latest export, to commit and go on
                                           # from on another machine (deleted when the recipe finishes)
    [model]                                # the codec's model options (checked by its task)
    cbr = "1/48"
    [data]
    train = ["../shared/data/train", "../shared/data/train_extra"]   # relative to the current folder
    val = 4                                # hold out the last 4 images of the first folder (or a folder)
    val_crop = 256
    [defaults]                             # keys every stage takes unless it sets its own
    batch = 16
    channel = "rayleigh-block"
    snr = "0:20"
    [[stages]]
    name = "fading"
    steps = 3000
    init = "lrisc_sim/checkpoints/deepjscc/deepjscc_cbr1-48_snr10.safetensors"   # or "previous", or
                                           # "OTHER.toml#STAGE": that recipe's finished stage
    lr = 1e-4
    eta = 0.5                              # any key that is not a StageConfig field is a codec option

Each stage writes its export (weights + model card) to ``<cache>/train/NAME/STAGE.safetensors`` at every
validation and keeps its resumable state beside it; re-running the command skips finished stages and continues
the running one. A stage's ``init = "previous"`` starts from the previous stage's final export. When the last stage
finishes, its export is copied to ``ship`` with its card. The model card names the recipe file, its SHA-256 and
the commit. Nothing in a recipe is executed: ``codec`` is looked up among the trainable codecs (a
``package.module:Task`` spec imports that module and must name a ``TrainTask`` subclass).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lrisc_sim.safeio import atomic_write_text
from lrisc_sim.trainer import Data, StageConfig, TrainTask

#: Built-in trainable codecs: name -> their TrainTask (imported lazily).
TASKS = {"deepjscc": "baselines.deepjscc_task:DeepJSCCTask", "lrisc": "lrisc_sim.lrisc.task:LRISCTask",
         "deepjscc-adaptive": "baselines.deepjscc_adaptive_task:AdaptiveDeepJSCCTask"}
TASK_GROUP = "lrisc_sim.train_tasks"  # entry points of plugin packages: name -> package.module:TaskClass
TOP_KEYS = {"name", "codec", "ship", "carry", "model", "data", "defaults", "stages", "description"}
DATA_KEYS = {"train", "val", "val_crop", "workers"}
STAGE_FIELDS = {f.name for f in fields(StageConfig)} - {"options"}
#: the code a training run depends on (the model card lists those of them that differ from the commit)
CODE_FILES = ("lrisc_sim", "baselines", "channels")


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file, the key and the fix."""


@dataclass
class Recipe:
    """A parsed recipe (see the module docstring)."""

    path: Path
    name: str
    codec: str
    model: dict[str, Any]
    data: Data
    stages: list[StageConfig]
    ship: Path | None = None
    carry: Path | None = None
    description: str = ""
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _stage(path: Path, i: int, table: dict, defaults: dict) -> StageConfig:
    merged = {**defaults, **table}
    known = {k: v for k, v in merged.items() if k in STAGE_FIELDS}
    options = {k: v for k, v in merged.items() if k not in STAGE_FIELDS}
    where = f"{path}: stages[{i}]"
    if "name" not in table:
        raise RecipeError(f"{where}: give each stage a name (name = \"...\")")
    try:
        st = StageConfig(**known, options=options)
    except TypeError as e:
        raise RecipeError(f"{where}: {e}") from None
    try:
        st.check()
    except ValueError as e:
        raise RecipeError(f"{where} ({st.name}): {e}") from None
    return st


def load_recipe(path: str | Path) -> Recipe:
    """Parse and check a recipe file; one-line :class:`RecipeError` naming the file and the key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        doc = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"recipe {path} not found; give a .toml recipe (recipes/ has the shipped ones)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RecipeError(f"{path}: not a readable TOML recipe ({str(e).splitlines()[0]})") from None
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {', '.join(unknown)}; a recipe has {', '.join(sorted(TOP_KEYS))}")
    for key in ("name", "codec"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise RecipeError(f"{path}: '{key}' must be a non-empty string")
    name = doc["name"]
    if not all(c.isalnum() or c in "-_." for c in name):
        raise RecipeError(f"{path}: name {name!r} may hold only letters, digits, '-', '_' and '.' (it names a folder)")
    data = doc.get("data", {})
    if not isinstance(data, dict) or "train" not in data:
        raise RecipeError(f"{path}: [data] needs train = [\"FOLDER\", ...]")
    bad = sorted(set(data) - DATA_KEYS)
    if bad:
        raise RecipeError(f"{path}: data.{bad[0]} is not a data key ({', '.join(sorted(DATA_KEYS))})")
    train = data["train"] if isinstance(data["train"], list) else [data["train"]]
    if not train or not all(isinstance(t, str) and t for t in train):
        raise RecipeError(f"{path}: data.train must be a folder or a list of folders")
    val = data.get("val", 4)
    if isinstance(val, bool) or not (isinstance(val, str) or (isinstance(val, int) and val >= 0)):
        raise RecipeError(f"{path}: data.val must be a number of held-out images (>= 0) or a folder")
    vc = data.get("val_crop", 256)
    if isinstance(vc, bool) or not isinstance(vc, int) or not 16 <= vc <= 4096:
        raise RecipeError(f"{path}: data.val_crop must be an integer in 16..4096")
    workers = data.get("workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 64:
        raise RecipeError(f"{path}: data.workers must be an integer in 0..64")
    defaults = doc.get("defaults", {})
    stages = doc.get("stages")
    if not isinstance(defaults, dict):
        raise RecipeError(f"{path}: [defaults] must be a table")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise RecipeError(f"{path}: give at least one [[stages]] table")
    parsed = [_stage(path, i, s, defaults) for i, s in enumerate(stages)]
    names = [s.name for s in parsed]
    if len(set(names)) != len(names):
        raise RecipeError(f"{path}: stage names must differ (got {', '.join(names)})")
    if parsed[0].init == "previous":
        raise RecipeError(f"{path}: stages[0] ({parsed[0].name}) has init = \"previous\" but no stage before it")
    model = doc.get("model", {})
    if not isinstance(model, dict):
        raise RecipeError(f"{path}: [model] must be a table of the codec's model options")
    for key, want in (("ship", "a .safetensors file to write"), ("carry", "a folder")):
        v = doc.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            raise RecipeError(f"{path}: '{key}' must be a path ({want})")
    if doc.get("ship") and (Path(doc["ship"]).suffix != ".safetensors" or Path(doc["ship"]).is_dir()):
        raise RecipeError(f"{path}: ship = {doc['ship']!r}: give the .safetensors file the final model is copied to")
    if doc.get("carry") and Path(doc["carry"]).exists() and not Path(doc["carry"]).is_dir():
        raise RecipeError(f"{path}: carry = {doc['carry']!r} exists and is not a folder; give a folder")
    return Recipe(path=path, name=name, codec=doc["codec"].strip(), model=model,
                  data=Data([str(t) for t in train], val, vc, workers), stages=parsed,
                  ship=Path(doc["ship"]) if doc.get("ship") else None,
                  carry=Path(doc["carry"]) if doc.get("carry") else None,
                  description=str(doc.get("description", "")), sha256=hashlib.sha256(raw).hexdigest())


def task_class(spec: str) -> type[TrainTask]:
    """The ``TrainTask`` class of a recipe's ``codec``: a built-in name, an installed plugin's entry point, or
    ``package.module:Task``; checked to be a ``TrainTask`` subclass before anything is called."""
    import importlib

    from lrisc_sim.plugins import entry_points

    if spec in TASKS:
        mod, _, attr = TASKS[spec].partition(":")
        obj = getattr(importlib.import_module(mod), attr)
    else:
        eps = entry_points(TASK_GROUP)
        if spec in eps:
            target = eps[spec].target
        elif ":" in spec:
            target = spec
        else:
            raise RecipeError(f"codec {spec!r} cannot be trained: trainable codecs are "
                              f"{', '.join(sorted(set(TASKS) | set(eps)))}, or name a plugin's TrainTask as "
                              "package.module:Task")
        mod, _, attr = target.partition(":")
        try:
            obj = importlib.import_module(mod)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as e:  # noqa: BLE001 - ImportError, AttributeError, or the plugin's own import failing
            raise RecipeError(f"trainable codec {spec!r}: cannot load {target} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); install the plugin or fix the name") \
                from None
    if not (isinstance(obj, type) and issubclass(obj, TrainTask)):
        raise RecipeError(f"codec {spec!r} names {getattr(obj, '__name__', type(obj).__name__)}, which is not a "
                          "lrisc_sim.trainer.TrainTask subclass; name the plugin's TrainTask")
    return obj


def run_dir(recipe: Recipe) -> Path:
    """The run's folder outside the work tree: ``<cache>/train/NAME`` (``LRISC_SIM_CACHE`` moves it)."""
    from lrisc_sim.data import cache_dir

    return cache_dir() / "train" / recipe.name


def _done(export: Path, steps: int) -> bool:
    import json

    card = export.with_suffix(".json")
    if not export.is_file() or not card.is_file():
        return False
    try:
        d = json.loads(card.read_text())
    except ValueError:
        return False
    return d.get("status") == "final" and int(d.get("steps", -1)) >= steps


def run_recipe(path: str | Path, device: str = "cpu", threads: int | None = None, max_minutes: float | None = None,
               fresh: bool = False, only: str | None = None, ship: bool = True, log=print) -> dict:
    """Run every unfinished stage of the recipe at ``path`` (or only stage ``only``); return the last card."""
    import time

    from lrisc_sim.provenance import git_commit
    from lrisc_sim.trainer import Trainer

    recipe = load_recipe(path)
    cls = task_class(recipe.codec)
    try:
        task = cls(**recipe.model)
    except TypeError as e:
        raise RecipeError(f"{recipe.path}: [model] options do not fit {recipe.codec} ({e})") from None
    except ValueError as e:
        raise RecipeError(f"{recipe.path}: [model]: {e}") from None
    names = [s.name for s in recipe.stages]
    if only is not None and only not in names:
        raise RecipeError(f"{recipe.path}: no stage {only!r} (stages: {', '.join(names)})")
    rdir = run_dir(recipe)
    base = {"recipe": str(recipe.path), "recipe_sha256": recipe.sha256, "recipe_name": recipe.name,
            **git_commit(CODE_FILES), "date": time.strftime("%Y-%m-%d")}
    card: dict = {}
    start_at = _carried_stage(recipe)
    for i, st in enumerate(recipe.stages):
        export = rdir / f"{st.name}.safetensors"
        if only is not None and st.name != only:
            continue
        if start_at is not None and i < start_at and not export.exists():
            log(f"stage {st.name}: skipped (a later stage's export is carried in {recipe.carry})")
            continue
        if _done(export, st.steps) and not (fresh and only in (None, st.name)):
            log(f"stage {st.name}: done ({export})")
            continue
        state = rdir / f"{st.name}.state.safetensors"
        carried = recipe.carry / f"{recipe.name}.{st.name}.safetensors" if recipe.carry else None
        again = fresh and only in (None, st.name)
        source = None if again or state.exists() else _continue_source(export, carried)
        cont = source is not None
        if cont:
            init = source  # an export of this stage in progress (another machine's, or this one's without state)
            log(f"stage {st.name}: continuing the export {source} (no state here)")
        else:
            try:
                init = _init_path(recipe, i, rdir)
            except RecipeError:
                if again or not state.exists():
                    raise
                init = None  # resuming: the state holds the weights
        if again and (state.exists() or export.exists()):
            log(f"stage {st.name}: starting afresh (--fresh): overwriting "
                f"{', '.join(str(q) for q in (state, export) if q.exists())}")
        carry = (lambda e, st=st: _carry(recipe, st, e)) if recipe.carry is not None else None
        trainer = Trainer(task, recipe.data, export, state, device, threads, max_minutes,
                          fresh=fresh and (only in (None, st.name)), card=base, log=log, on_export=carry)
        card = trainer.fit(st, init, continue_export=cont)
        if card.get("status") != "final":
            return card
    if card.get("status") == "final" and only is None:
        if recipe.ship is not None and ship:
            last = rdir / f"{recipe.stages[-1].name}.safetensors"
            recipe.ship.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(last, recipe.ship)
            shipped = {**json.loads(last.with_suffix(".json").read_text()), **stage_lineage(recipe, rdir)}
            atomic_write_text(recipe.ship.with_suffix(".json"), json.dumps(shipped, indent=2) + "\n")
            log(f"shipped {recipe.ship} ({shipped['recipe_cpu_hours']:.2f} CPU-hours over its "
                f"{len(recipe.stages)} stage(s))")
        if recipe.carry is not None:
            for p in recipe.carry.glob(f"{recipe.name}.*"):
                p.unlink()
    return card


def stage_lineage(recipe: Recipe, rdir: Path) -> dict:
    """What the shipped card adds to the last stage's: ``recipe_stages``, each stage of the recipe with its steps,
    CPU-hours, start (``init``) and last validation (from the stage's export card), and ``recipe_cpu_hours``, their
    sum (warm starts from outside the recipe not included: the first stage's ``init`` names them)."""
    stages, total = [], 0.0
    for st in recipe.stages:
        path = rdir / f"{st.name}.json"
        c = json.loads(path.read_text()) if path.is_file() else {}
        hours = float(c.get("cpu_hours", 0.0))
        total += hours
        stages.append({"name": st.name, "steps": c.get("steps"), "cpu_hours": round(hours, 4), "init": st.init,
                       "validation": c.get("validation")})
    return {"recipe_stages": stages, "recipe_cpu_hours": round(total, 4)}


def _init_path(recipe: Recipe, i: int, rdir: Path) -> Path | None:
    init = recipe.stages[i].init
    if init is None:
        return None
    if init == "previous":
        prev = rdir / f"{recipe.stages[i - 1].name}.safetensors"
        if not prev.is_file():
            raise RecipeError(f"{recipe.path}: stage {recipe.stages[i].name} starts from stage "
                              f"{recipe.stages[i - 1].name}, whose export {prev} does not exist: run that stage first")
        return prev
    if "#" in init:  # another recipe's finished stage: "recipes/lrisc_small.toml#3"
        return _stage_of(recipe, recipe.stages[i].name, init)
    p = Path(init)
    if not p.is_file():
        raise RecipeError(f"{recipe.path}: stage {recipe.stages[i].name}: init {p} not found")
    return p


def _stage_of(recipe: Recipe, stage: str, init: str) -> Path:
    """The final export of stage ``S`` of another recipe, ``init = "OTHER.toml#S"`` (a branch from a stage of a
    longer run, e.g. the perceptual LRISC from the end-to-end stage of ``recipes/lrisc_small.toml``); a one-line
    ``RecipeError`` naming the command that makes it when it is not there."""
    file, _, name = init.rpartition("#")
    other = load_recipe(file)
    names = [s.name for s in other.stages]
    if name not in names:
        raise RecipeError(f"{recipe.path}: stage {stage}: init {init!r}: {file} has no stage {name!r} "
                          f"(stages: {', '.join(names)})")
    st = other.stages[names.index(name)]
    export = run_dir(other) / f"{name}.safetensors"
    if not _done(export, st.steps):
        raise RecipeError(f"{recipe.path}: stage {stage} starts from stage {name} of {file}, which is not finished "
                          f"here ({export}); run 'lrisc-sim train {file} --stage {name}' first (or the stages up to "
                          "it)")
    return export


def _continue_source(export: Path, carried: Path | None) -> Path | None:
    """The export a stage without its state goes on from: this run's own export (its state was lost) or the
    carried one, whichever is further along (a card that cannot be read is taken, so that the trainer names it);
    None when there is neither, and the stage starts from its ``init``."""
    import json

    have = [p for p in (export, carried) if p is not None and p.is_file()]
    if len(have) < 2:
        return have[0] if have else None

    def steps(p: Path) -> float:
        try:
            return float(json.loads(p.with_suffix(".json").read_text()).get("steps", -1))
        except (OSError, ValueError, AttributeError, TypeError):
            return float("inf")

    return max(have, key=steps)


def _carried_stage(recipe: Recipe) -> int | None:
    """Index of the stage whose export is carried in ``recipe.carry`` (None: none)."""
    if recipe.carry is None:
        return None
    for i, st in reversed(list(enumerate(recipe.stages))):
        if (recipe.carry / f"{recipe.name}.{st.name}.safetensors").is_file():
            return i
    return None


def _carry(recipe: Recipe, stage: StageConfig, export: Path) -> None:
    """Keep exactly one carried export: the latest of the running stage."""
    assert recipe.carry is not None
    recipe.carry.mkdir(parents=True, exist_ok=True)
    for p in recipe.carry.glob(f"{recipe.name}.*"):
        p.unlink()
    dst = recipe.carry / f"{recipe.name}.{stage.name}.safetensors"
    if export.is_file():
        shutil.copyfile(export, dst)
        shutil.copyfile(export.with_suffix(".json"), dst.with_suffix(".json"))
