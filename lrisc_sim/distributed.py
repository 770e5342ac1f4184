"""The Ray executor: the tasks of a sweep run as Ray tasks (one GPU each when the cluster has GPUs); rows come
back to the driver, which writes them to the same results table, so resume works as with the local executor.

Every node must have lrisc-sim installed (``pip install lrisc-sim[ray]``) and, for learned codecs, the same
checkpoints. Results are identical to the local executor's: realizations depend only on (seed, image, trial).
"""

from __future__ import annotations

from dataclasses import asdict

from lrisc_sim.engine import SweepConfig, Task
from lrisc_sim.results import ResultsTable

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
        raise ValueError(f"--ray-address is empty: {RAY_ADDRESS_FORMS}")
    try:
        u = urlsplit(text if "://" in text else f"gcs://{text}")
        host, port = u.hostname, u.port
    except ValueError:
        host = port = None
    if u.scheme not in ("gcs", "ray") or not host or port is None or (u.path not in ("", "/")):
        raise ValueError(f"--ray-address {address!r} is not a Ray address: {RAY_ADDRESS_FORMS}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise ValueError(f"--ray-address {address}: no Ray cluster answers at {host}:{port} ({why}); start one "
                         "there with 'ray start --head', or leave --ray-address out for a local instance") from None


def _execute(cfg_dict: dict, task: Task, use_gpu: bool) -> list[dict]:
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
    rows: list[dict] = []
    for r in eng.run_task(task):
        rows += r
    return rows


def run_tasks_ray(cfg: SweepConfig, tasks: list[Task], table: ResultsTable, address: str | None = None,
                  progress: bool = True) -> None:
    """Submit every task to Ray (a local instance, or the cluster at ``address``) and append rows as tasks end."""
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'lrisc-sim[ray]' (or pip install ray)") from None
    from tqdm import tqdm

    if not ray.is_initialized():
        check_ray_address(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:  # e.g. a port that answers but is no Ray
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"--ray-address {address}: Ray could not connect ({first}); check the address "
                             "('ray status' on the cluster), or leave --ray-address out") from None
    gpus = ray.cluster_resources().get("GPU", 0) > 0 and cfg.device != "cpu"
    remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=2)(_execute)
    cfg_dict = asdict(cfg)
    pending = {remote.remote(cfg_dict, t, gpus): t for t in tasks}
    with tqdm(total=sum(t.n_points for t in tasks), unit="img-pt", disable=not progress, dynamic_ncols=True) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pending.pop(ref)
                rows = ray.get(ref)
                table.append(rows)
                bar.update(len(rows))
