"""Sweeps on an existing Ray cluster (README "Sweeps on a cluster"): a head started with ``ray start --head`` on
this machine (loopback only) stands in for the cluster. The rows equal the local executor's; a Ray worker killed
mid-task loses no row and duplicates none; a task that fails for good leaves the other tasks' rows and the same
command completes the table."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'lrisc-sim[ray]')")

from lrisc_sim.cli import main  # noqa: E402
from lrisc_sim.distributed import wants_gpus  # noqa: E402
KEY = ("codec", "cbr_target", "snr_db", "channel", "trial", "image")  # the identity of a row (results.point_key)

NUMBERS = ["psnr", "cbr_payload", "cbr_side", "cbr_total", "ok"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """``ray start --head --block`` on 127.0.0.1 with 2 CPUs; yields the address. Teardown stops this head only
    (SIGTERM to its ``ray start`` process, which drains and ends its own processes; then SIGKILL to its process
    group), never ``ray stop``, which would also end other Ray instances on the machine."""
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip(f"the ray command is not next to {sys.executable}")
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="lrisc-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # A node IP of 127.0.0.1 (Ray otherwise replaces loopback by the machine's address and listens there too);
    # token authentication off for this throwaway head (Ray >= 2.5x turns it on and keeps the token in ~/.ray).
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(Path(tmp) / "head.log", "w")
    proc = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--num-gpus", "0", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
                             "--include-dashboard", "false", "--dashboard-host", "127.0.0.1", "--temp-dir", tmp],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    consts = ray._private.ray_constants
    cluster_mode = getattr(consts, "ENABLE_RAY_CLUSTER", None)
    consts.ENABLE_RAY_CLUSTER = False  # this driver too keeps 127.0.0.1 as it is (same switch as the env above)
    old_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in (Path(tmp) / "head.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start --head did not start:\n" + (Path(tmp) / "head.log").read_text()[-2000:])
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of this head is left (its own process group)
        except ProcessLookupError:
            pass
        proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
        consts.ENABLE_RAY_CLUSTER = cluster_mode
        if old_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old_auth


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from skimage import data

    a = data.chelsea()
    d = tmp_path_factory.mktemp("imgs")
    for i, (y, x) in enumerate([(0, 0), (100, 200), (200, 100)]):
        Image.fromarray(a[y:y + 32, x:x + 32]).save(d / f"im{i}.png")
    return d


def sweep(images: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--codec", "softcast,uncoded", "--snr", "0,10", "--cbr", "1/16", "--dataset", str(images),
            "--batch-size", "1", "--metrics", "psnr", "--device", "cpu", "--seed", "5", "--no-progress",
            "--out", str(out), *extra]


@pytest.fixture(scope="module")
def local(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    assert main(sweep(images, out)) == 0
    return table(out)


def table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").sort_values(list(KEY)).reset_index(drop=True)


def same_rows(out: Path, local: pd.DataFrame) -> None:
    """Every key of the local run exactly once, with the same numbers."""
    df = table(out)
    assert not df.duplicated(list(KEY)).any(), df[df.duplicated(list(KEY), keep=False)]
    assert len(df) == len(local) == 2 * 2 * 3  # codecs x SNR x images
    pd.testing.assert_frame_equal(df[list(KEY) + NUMBERS], local[list(KEY) + NUMBERS])


def test_gpus_requested_only_when_the_cluster_has_them():
    assert not wants_gpus({"CPU": 2.0}, "auto")
    assert not wants_gpus({"CPU": 2.0, "GPU": 0.0}, "cuda")
    assert wants_gpus({"CPU": 8.0, "GPU": 2.0}, "auto")
    assert wants_gpus({"GPU": 1.0}, "cuda:0")
    assert not wants_gpus({"GPU": 4.0}, "cpu")


def test_sweep_on_existing_cluster_matches_local(head, images, local, tmp_path):
    out = tmp_path / "ray"
    assert main(sweep(images, out, "--executor", "ray", "--ray-address", head)) == 0
    same_rows(out, local)
    assert not ray.is_initialized()  # the executor closed the session it opened
    assert (out / "codecs.txt").is_file()


def _hook(ctl: str):
    """Runs in every worker process the test's Ray session starts: with ``ctl/slow`` present the softcast task
    of im1 yields its first point, writes the worker's pid to ``ctl/pid`` and waits (to be killed); with
    ``ctl/fail`` present every uncoded task raises."""

    def setup():
        import os
        import time

        from lrisc_sim import engine

        run_task = engine.Engine.run_task

        def patched(self, task):
            slow = os.path.join(ctl, "slow")
            if task.codec == "uncoded" and os.path.exists(os.path.join(ctl, "fail")):
                raise RuntimeError("injected failure")
            for i, rows in enumerate(run_task(self, task)):
                yield rows
                if i == 0 and task.codec == "softcast" and task.items[0].id == "im1" and os.path.exists(slow):
                    with open(os.path.join(ctl, "pid.tmp"), "w") as f:
                        f.write(str(os.getpid()))
                    os.replace(os.path.join(ctl, "pid.tmp"), os.path.join(ctl, "pid"))
                    end = time.monotonic() + 60
                    while os.path.exists(slow) and time.monotonic() < end:
                        time.sleep(0.1)

        engine.Engine.run_task = patched

    setup.__module__ = "lrisc_test_ray_hook"  # not importable: cloudpickle ships the function by value
    return setup


def test_killed_worker_loses_and_repeats_no_row(head, images, local, tmp_path, capsys):
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    ray.init(address=head, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"worker_process_setup_hook": _hook(str(ctl))})
    try:
        assert ray.cluster_resources().get("GPU", 0) == 0  # so the tasks asked for no GPU
        (ctl / "slow").touch()
        killed = []

        def killer():
            end = time.monotonic() + 60
            while not (ctl / "pid").exists() and time.monotonic() < end:
                time.sleep(0.1)
            if (ctl / "pid").exists():
                pid = int((ctl / "pid").read_text())
                assert pid != os.getpid()
                os.kill(pid, signal.SIGKILL)  # the Ray worker, in the middle of its task
                killed.append(pid)
            (ctl / "slow").unlink()  # the retry runs through

        t = threading.Thread(target=killer)
        t.start()
        out = tmp_path / "killed"
        rc = main(sweep(images, out, "--executor", "ray", "--ray-address", head))
        t.join()
        assert killed, "the slow task never started"
        assert rc == 0  # Ray ran the task again on a fresh worker; its first point, computed before, was lost
        same_rows(out, local)
        assert main(sweep(images, out, "--executor", "ray", "--ray-address", head)) == 0  # a rerun adds nothing
        same_rows(out, local)

        (ctl / "fail").touch()  # a task that fails for good: the others' rows stay, the rerun completes
        out = tmp_path / "failed"
        capsys.readouterr()
        assert main(sweep(images, out, "--executor", "ray", "--ray-address", head)) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "3 of 6 Ray task(s) failed" in err and "injected failure" in err and "rerun the same command" in err
        part = table(out)
        assert set(part["codec"]) == {"softcast"} and len(part) == 2 * 3 and not part.duplicated(list(KEY)).any()
        (ctl / "fail").unlink()
        assert main(sweep(images, out, "--executor", "ray", "--ray-address", head)) == 0
        same_rows(out, local)
    finally:
        ray.shutdown()
