"""Shared tracking: an unreachable server, or one that refuses the login, fails at start, in one
line, before Ray or any training compute.

A run logged over HTTP to a real `mlflow server` on 127.0.0.1 and read back is part of
`tests/runtime/test_storage.py` (its runs track to such a server, with artifacts in the bucket):
one Ray run proves both."""

from __future__ import annotations

import time

import pytest

from tests.support import free_port, running_mlflow_server, tiny_experiment


def test_unreachable_server_fails_before_ray_starts(tmp_path, tiny_shards):
    import ray

    from vfn.config.schema import config_from_dict
    from vfn.tracking.runs import TrackingServerUnreachable
    from vfn.training.driver import run_training

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = config_from_dict(tiny_experiment(tiny_shards, tmp_path, tracking={"tracking_uri": closed},
                                   output={"root": str(tmp_path), "name": "nowhere"}))
    was_running = ray.is_initialized()
    start = time.time()
    with pytest.raises(TrackingServerUnreachable, match=f"{closed} is unreachable"):
        run_training(cfg, progress=False)
    assert time.time() - start < 30  # no minutes of client retries
    assert ray.is_initialized() == was_running  # Ray was not started for it
    assert not list((tmp_path / "runs" / "nowhere").glob("checkpoint_*"))


ADMIN, ADMIN_PASSWORD = "admin", "vfn-test-admin-pass-1"


def test_a_refused_login_is_one_line_before_ray_starts(tmp_path, tiny_shards, monkeypatch, capsys):
    """Against MLflow's basic-auth app: anonymous and wrong-password requests are refused, in one line
    that says which variables to set, before Ray starts; with an account's credentials the check passes,
    and a read-only account may read (compare)."""
    import yaml

    from vfn.cli import main
    from vfn.tracking.runs import TrackingServerRefused, check_tracking_server
    from vfn.training import driver

    (tmp_path / "auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n"
        f"admin_username = {ADMIN}\nadmin_password = {ADMIN_PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only"}
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials of the machine's
    secured = running_mlflow_server(tmp_path, str(tmp_path / "artifacts"), env=env, args=("--app-name", "basic-auth"))
    with secured as uri:
        raw = tiny_experiment(tiny_shards, tmp_path, tracking={"tracking_uri": uri}, output={"root": str(tmp_path)})
        (tmp_path / "secured.yaml").write_text(yaml.safe_dump(raw))
        monkeypatch.setattr(driver, "init_ray", lambda *a, **k: pytest.fail("Ray started before the refusal"))
        assert main(["train", str(tmp_path / "secured.yaml")]) == 2
        refusal = (f"vfn train: tracking server {uri}: 401 unauthorized: set MLFLOW_TRACKING_USERNAME and "
                   "MLFLOW_TRACKING_PASSWORD (or MLflow's credentials file, ~/.mlflow/credentials) to an account "
                   "of the server")
        assert capsys.readouterr().err.strip() == refusal
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        with pytest.raises(TrackingServerRefused, match="401 unauthorized"):
            check_tracking_server(uri)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        check_tracking_server(uri)  # the admin logs in, and logs a run
        from mlflow.exceptions import MlflowException
        from mlflow.server import get_app_client
        from mlflow.tracking import MlflowClient

        admin = MlflowClient(uri)
        run = admin.create_run(admin.create_experiment("shared"), run_name="admins-run")
        admin.log_metric(run.info.run_id, "epoch/val_top1", 0.5, step=1)
        get_app_client("basic-auth", tracking_uri=uri).create_user("reader", "vfn-test-reader-pass-1")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "vfn-test-reader-pass-1")
        check_tracking_server(uri)  # READ is enough to compare
        assert main(["compare", "shared", "--tracking-uri", uri]) == 0
        assert "admins-run" in capsys.readouterr().out
        with pytest.raises(MlflowException) as denied:  # but not to write into another's experiment
            MlflowClient(uri).log_metric(run.info.run_id, "epoch/val_top1", 0.9, step=2)
        assert denied.value.get_http_status_code() == 403
