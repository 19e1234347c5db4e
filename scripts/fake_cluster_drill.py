"""Bring up cluster.yaml's node types on this machine with Ray's fake multi-node provider, submit a
tiny `vfn train` job with `ray job submit`, check the autoscaler added a worker node for it, and
tear everything down.

    python scripts/fake_cluster_drill.py            # about a minute on 2 cores

What it exercises from cluster.yaml: the head node type (0 CPUs, so training cannot run there),
the autoscaling worker type (min_workers 0: the cluster starts with the head only), the autoscaler
settings, the dashboard/job-submission path and `output.root` on storage the job driver and the
workers share. What it cannot: `ray up` itself (its local provider, `fake_multinode_docker`, starts
nodes as Docker containers over SSH, and needs a Docker engine), the cloud provider, the docker
image and the setup commands. The worker type's `resources` ({} on AWS, detected from the
instance) become {"CPU": 2} here, and no GPU.

It runs `ray stop --force` at the start and the end, which stops every Ray on this machine: it is
a script for a quiet machine, not a test in the shared-session suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HEAD_TYPE = "ray.head.default"  # the fake provider's fixed name for the head node type


def fake_config(cluster: dict, worker_cpus: int, max_workers: int) -> dict:
    """cluster.yaml with the fake provider and resources a laptop can give; commands and mounts
    (SSH, docker, pip) do not apply to nodes that are local processes."""
    head = cluster["available_node_types"][cluster["head_node_type"]]
    workers = {name: {"min_workers": t.get("min_workers", 0), "max_workers": min(t.get("max_workers", 1), max_workers),
                      "resources": {"CPU": worker_cpus}, "node_config": {}}
               for name, t in cluster["available_node_types"].items() if name != cluster["head_node_type"]}
    return {
        "cluster_name": cluster["cluster_name"] + "-fake",
        "max_workers": min(cluster["max_workers"], max_workers),
        "upscaling_speed": cluster.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": cluster.get("idle_timeout_minutes", 5),
        # nodes are local processes: no SSH updater runs commands on them
        "provider": {"type": "fake_multinode", "disable_node_updaters": True, "disable_launch_config_check": True},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {HEAD_TYPE: {"resources": head.get("resources", {}), "node_config": {},
                                             "max_workers": 0}, **workers},
        "head_node_type": HEAD_TYPE,
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, **kw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=None, help="where shards and the run go (default: a temp dir)")
    parser.add_argument("--worker-cpus", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vfn-fake-cluster-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ray_bin = str(Path(sys.executable).parent / "ray")

    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config = fake_config(cluster, args.worker_cpus, max_workers=1)
    (work / "fake_cluster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    # tiny data and experiment, as in the tests
    from vfn.data.ingest import write_shards
    from vfn.data.synth import make_synthetic_dataset

    synth = make_synthetic_dataset(work / "synth", 24, seed=3, num_classes=4, size=32, num_frames=8)
    for split, manifest in (("train", synth.train_manifest), ("val", synth.val_manifest)):
        write_shards(manifest, str(work / "shards" / split), root=synth.root, progress=False)
    experiment = {
        "model": {"embed_dim": 8, "depths": [1, 1, 1, 1], "drop_path_rate": 0.0},
        "data": {"train": str(work / "shards" / "train"), "val": str(work / "shards" / "val"), "num_classes": 4,
                 "num_frames": 4, "input_size": 32, "decode_cpus": 0.5},
        "augment": {"mixup_prob": 0.0},
        "optim": {"optimizer": "adamw", "lr": 1e-3, "lr_scale_batch": None, "epochs": 2, "warmup_epochs": 0,
                  "min_lr": 0.0, "batch_size": 4},
        "eval": {"num_clips": 1, "num_crops": 1, "batch_size": 4},
        "scaling": {"num_workers": 1, "cpus_per_worker": 1.0, "use_gpu": False},
        "tracking": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}"},
        "output": {"root": str(work / "out"), "name": "drill"},
    }
    (work / "drill.yaml").write_text(yaml.safe_dump(experiment))

    # token auth as cluster.yaml sets it: the head, the nodes and `ray job submit` all use ~/.ray/auth_token
    run([ray_bin, "get-auth-token", "--generate"], check=True, capture_output=True)
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    run([ray_bin, "stop", "--force"], check=False, capture_output=True)
    t0 = time.time()
    ok = False
    try:
        head_cpus = config["available_node_types"][HEAD_TYPE]["resources"].get("CPU", 0)
        run([ray_bin, "start", "--head", f"--num-cpus={head_cpus}", "--port=6379", "--dashboard-host=127.0.0.1",
             "--disable-usage-stats",
             f"--autoscaling-config={work / 'fake_cluster.yaml'}"], env=env, check=True)
        print(f"head up in {time.time() - t0:.0f} s; submitting the job (the head has {head_cpus} CPUs)", flush=True)
        t1 = time.time()
        entry = (f"{sys.executable} -c 'import sys; from vfn.cli import main; sys.exit(main())' "
                 f"train {work / 'drill.yaml'}")
        job = run([ray_bin, "job", "submit", "--address", "http://127.0.0.1:8265", "--", "bash", "-c", entry],
                  env=env, capture_output=True, text=True, timeout=600)
        print(job.stdout[-3000:], job.stderr[-2000:], sep="\n")
        job_s = time.time() - t1

        import ray

        ray.init(address="auto", log_to_driver=False)
        nodes = ray.nodes()
        ray.shutdown()
        workers = [n for n in nodes if n["NodeManagerAddress"] and not n["Resources"].get("node:__internal_head__")]
        run_json = work / "out" / "runs" / "drill" / "vfn_run.json"
        index = json.loads(run_json.read_text()) if job.returncode == 0 else {}
        print(f"nodes: {len(nodes)} ({len(workers)} added by the autoscaler: "
              f"{[n['Resources'].get('CPU') for n in workers]} CPUs); "
              f"job {'SUCCEEDED' if job.returncode == 0 else 'FAILED'} "
              f"in {job_s:.0f} s; checkpoint {index.get('best_checkpoint')}")
        ok = job.returncode == 0 and len(workers) >= 1 and bool(index.get("best_checkpoint"))
    finally:
        run([ray_bin, "stop", "--force"], check=False, capture_output=True)
        print(f"torn down; {time.time() - t0:.0f} s in all; drill {'PASSED' if ok else 'FAILED'} (files in {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
