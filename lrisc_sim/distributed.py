"""The Ray executor: the tasks of a sweep run as Ray tasks (one GPU each when the cluster has GPUs); rows come
back to the driver, which writes them to the same results table, so resume works as with the local executor.

Every node must have lrisc-sim installed (``pip install lrisc-sim[ray]``) and, for learned codecs, the same
checkpoints. Results are identical to the local executor's: realizations depend only on (seed, image, trial).

A task returns all its rows at once when it ends, and only the driver writes ``results.csv``: a task whose
worker dies (a killed process, a lost node) has written nothing, and Ray runs it again from the start on another
worker (``MAX_RETRIES`` times). A task that still fails does not stop the others; their rows are kept and the run
ends with a one-line error, so rerunning the same command computes only the missing points (the table skips keys
it already holds, so no row is ever written twice).
"""

from __future__ import annotations

from dataclasses import asdict

from lrisc_sim.engine import SweepConfig, Task
from lrisc_sim.results import ResultsTable, Row
from lrisc_sim.sweep_config import ConfigError

_ENGINES: dict[str, object] = {}  # per worker process: engines (with loaded codecs) by config

RAY_ADDRESS_FORMS = "use HOST:PORT (e.g. 127.0.0.1:6379), ray://HOST:PORT, or 'auto' for the cluster started here"


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """Check a Ray cluster address before Ray is started (``ray.init`` on a dead address prints pages of warnings
    and retries for half a minute): its form, then that something accepts a TCP connection at HOST:PORT within
    ``timeout`` seconds. None (a local instance) and 'auto'/'local' are accepted as they are."""
    import socket
    from urllib.parse import urlsplit

    if address is None or address in ("auto", "local"):
        return
    text = address.strip()
    if not text:
        raise ConfigError("ray_address", address, f"the Ray address is empty: {RAY_ADDRESS_FORMS}")
    try:
        u = urlsplit(text if "://" in text else f"gcs://{text}")
        host, port = u.hostname, u.port
    except ValueError:
        host = port = None
    if u.scheme not in ("gcs", "ray") or not host or port is None or (u.path not in ("", "/")):
        raise ConfigError("ray_address", address, f"not a Ray address: {RAY_ADDRESS_FORMS}", show_value=True)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise ConfigError("ray_address", address, f"no Ray cluster answers at {host}:{port} ({why}); start one "
                          "there with 'ray start --head', or leave the address out for a local instance",
                          show_value=True) from None


def _execute(cfg_dict: dict, task: Task, use_gpu: bool) -> list[Row]:
    """Run one task inside a Ray worker and return all its rows."""
    import json

    import torch

    from channels import make_channel
    from lrisc_sim.engine import Engine

    torch.set_num_threads(1)
    key = json.dumps(cfg_dict, sort_keys=True, default=str) + str(use_gpu)
    eng = _ENGINES.get(key)
    if eng is None:
        cfg = SweepConfig(**cfg_dict)
        dev = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        eng = Engine(cfg, make_channel(cfg.channel), dev)
        _ENGINES[key] = eng
    rows: list[Row] = []
    for r in eng.run_task(task):
        rows += r
    return rows


def wants_gpus(resources: dict, device: str) -> bool:
    """Whether each task asks Ray for one GPU: only when the cluster reports GPUs (``ray.cluster_resources()``)
    and the sweep is not pinned to the CPU. A task asking for a GPU on a cluster without one would wait forever."""
    return float(resources.get("GPU", 0) or 0) > 0 and device != "cpu"


MAX_RETRIES = 2  # reruns of a task whose worker process died (Ray's system-failure retries)


def run_tasks_ray(cfg: SweepConfig, tasks: list[Task], table: ResultsTable, address: str | None = None,
                  progress: bool = True) -> None:
    """Submit every task to Ray (a local instance, or the cluster at ``address``) and append rows as tasks end.
    Ray is shut down at the end when this call started it (a Ray session opened by the caller is left open)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("executor", "ray", "needs Ray: pip install 'lrisc-sim[ray]' (or pip install ray)",
                          show_value=True) from None

    started = False
    if not ray.is_initialized():
        check_ray_address(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:  # e.g. a port that answers but is no Ray
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError("ray_address", address, f"Ray could not connect ({first}); check the address ('ray "
                              "status' on the cluster), or leave it out", show_value=True) from None
        started = True
    try:
        _run_on_ray(ray, cfg, tasks, table, progress)
    finally:
        if started:
            ray.shutdown()


def _run_on_ray(ray, cfg: SweepConfig, tasks: list[Task], table: ResultsTable, progress: bool) -> None:
    from ray.exceptions import RayError
    from tqdm import tqdm

    gpus = wants_gpus(ray.cluster_resources(), cfg.device)
    remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=MAX_RETRIES,
                        retry_exceptions=False)(_execute)
    cfg_dict = asdict(cfg)
    pending = {remote.remote(cfg_dict, t, gpus): t for t in tasks}
    failed: list[tuple[Task, str]] = []
    with tqdm(total=sum(t.n_points for t in tasks), unit="img-pt", disable=not progress, dynamic_ncols=True) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    rows = ray.get(ref)
                except RayError as e:  # the task raised, or its worker died more than MAX_RETRIES times
                    failed.append((task, _first_line(e)))
                    continue
                table.append(rows)
                bar.update(len(rows))
    if failed:
        task, why = failed[0]
        raise ValueError(f"{len(failed)} of {len(tasks)} Ray task(s) failed (first: {task.codec} at CBR "
                         f"{task.cbr}, images {', '.join(it.id for it in task.items)}: {why}); the rows of the "
                         "others are in results.csv: rerun the same command to compute only the missing points")


def _first_line(e: BaseException) -> str:
    """The cause of a Ray error in one line (a task's own exception rather than Ray's wrapper text)."""
    cause = getattr(e, "cause", None)
    err = cause if isinstance(cause, BaseException) else e
    for line in str(err).strip().splitlines():
        if line.strip():
            return f"{type(err).__name__}: {line.strip()}"[:300]
    return type(err).__name__
