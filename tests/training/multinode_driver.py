"""Multi-node scenarios on one machine (run in its own process by tests/training/test_multinode.py).

A `ray.cluster_utils.Cluster` with a CPU-less head and two 3-CPU worker nodes. A Train worker asks
for 2 CPUs, so no node can hold two of them: a 2-worker run necessarily spans both worker nodes,
and the CPU left on each node runs Ray Data's read and decode tasks. Storage is one directory all
nodes see. (CPUs here are logical: the machine has 2 cores.)

    python tests/training/multinode_driver.py WORKDIR TRAIN_SHARDS VAL_SHARDS  -> JSON on the last line

Both scenarios share one cluster (starting one costs more than either scenario): first a 2-worker
training run loses a node hosting a worker and continues on the spare node; then a sweep runs two
concurrent trials on the two nodes that are left.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path


def base_config(workdir: Path, train: str, val: str, **over):
    from tests.support import tiny_experiment
    from vfn.config.schema import config_from_dict

    raw = tiny_experiment(None, workdir, data={"train": train, "val": val}, optim={"batch_size": 2},
                          eval={"every_epochs": 2}, scaling={"num_workers": 2, "cpus_per_worker": 2, "max_failures": 2},
                          output={"name": "multinode", "checkpoint_every": 1}, tracking={"enabled": False})
    cfg = config_from_dict(raw)
    return cfg.with_overrides(over) if over else cfg


def start_cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    # a spare third node stands in for the autoscaler (nodes can only be added from the main thread)
    workers = [cluster.add_node(num_cpus=3) for _ in range(3)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster, workers


def node_ids_of_train_workers() -> set[str]:
    import ray

    return {a["Address"]["NodeID"] for a in ray._private.state.actors().values()
            if a["State"] == "ALIVE" and "RayTrainWorker" in a.get("ActorClassName", "")}


def train(cluster, workers, workdir: Path, train_shards: str, val_shards: str) -> dict:
    from vfn.training.driver import make_plan, run_training

    cfg = base_config(workdir, train_shards, val_shards)
    run_dir = workdir / "runs" / cfg.output.name
    seen_nodes: set[str] = set()
    removed: dict = {}

    def remove_a_node_after_first_checkpoint():
        # like a spot instance going away: once epoch 1 is checkpointed, a node running a Train
        # worker dies; the run continues on the spare node
        snapshot = run_dir / "checkpoint_manager_snapshot.json"  # written once Train has registered one
        while not (snapshot.is_file() and "checkpoint_" in snapshot.read_text()):
            seen_nodes.update(node_ids_of_train_workers())
            time.sleep(0.2)
        busy = node_ids_of_train_workers()
        seen_nodes.update(busy)
        victim = next(n for n in workers if n.node_id in busy)
        removed["node_id"] = victim.node_id
        removed["checkpoints_before"] = len(list(run_dir.glob("checkpoint_*")))
        cluster.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=remove_a_node_after_first_checkpoint, daemon=True)
    killer.start()
    result = run_training(cfg, progress=False)
    plan = make_plan(cfg)
    return {
        "global_step": result.metrics.get("global_step"),
        "expected_steps": plan.steps_per_epoch * cfg.optim.epochs,
        "epoch": result.metrics.get("epoch"),
        "restarts": result.metrics.get("restarts"),
        "worker_nodes": sorted(seen_nodes),
        "removed": removed,
        "checkpoints": sorted(p.name for p in run_dir.glob("checkpoint_*")),
        "storage": str(run_dir),
        "val_top1": result.metrics.get("val_top1"),
    }


def sweep(workers, workdir: Path, train_shards: str, val_shards: str) -> dict:
    """`workers`: the two nodes left after `train` removed one."""
    import ray

    from vfn.config.sweep import SweepSpec
    from vfn.tuning.sweep import run_sweep

    cfg = base_config(workdir, train_shards, val_shards, **{"optim.epochs": 1, "eval.every_epochs": 1})
    spec = SweepSpec.model_validate({
        "name": "spread", "base": "-", "space": {"model.design": {"grid": ["parallel", "spatial"]}},
        "trial": {"num_workers": 1, "cpus_per_worker": 2},
    })
    nodes: set[str] = set()
    stop = threading.Event()
    def watch():
        while not stop.is_set():
            nodes.update(node_ids_of_train_workers())
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = run_sweep(spec, cfg, kind="sweep")
    stop.set()
    return {
        "trials": len(result.outcomes),
        "errors": [o.error for o in result.outcomes if o.error],
        "worker_nodes": sorted(nodes),
        "cluster_worker_nodes": sorted(n.node_id for n in workers),
        "cpus": ray.cluster_resources().get("CPU"),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for `tests.support`
    workdir, train_shards, val_shards = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    cluster, workers = start_cluster()
    trained = train(cluster, workers, workdir, train_shards, val_shards)
    left = [n for n in workers if n.node_id != trained["removed"].get("node_id")]
    swept = sweep(left, workdir / "sweep", train_shards, val_shards)  # two nodes: both trials at once
    print("RESULT " + json.dumps({"train": trained, "sweep": swept}), flush=True)
    os._exit(0)  # skip interpreter teardown of the in-process cluster (its processes die with us)
