"""Ray set-up shared by every command that starts Ray (train, eval, sweep, bench): one place that
decides which Ray to join, whether workers get GPUs, what each worker reserves, whether the run
fits, and how datasets are split between workers.

A command starts its own local Ray (`address="local"`) unless the user names a cluster
(`--address` or `$RAY_ADDRESS`): a plain `ray.init()` would join whatever Ray another process left
running on this machine (a stale `/tmp/ray/ray_current_cluster`), and die with it.
"""

from __future__ import annotations

import os
import sys

import ray
from ray.train import DataConfig as RayDataConfig
from ray.train import ScalingConfig as RayScalingConfig

from vfn.config.schema import ExperimentConfig
from vfn.errors import ConfigError

from . import worker_hooks

PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def init_ray(ray_init_kwargs: dict | None = None) -> bool:
    """Connect to the named cluster or start a local instance; True when this call started a
    local instance (of fixed size: no autoscaler can add nodes to it)."""
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": True, **(ray_init_kwargs or {})}
    address = kwargs.get("address") or os.environ.get("RAY_ADDRESS")
    if not address:
        kwargs["address"] = address = "local"
    if address == "local":
        # Train passes it from this process to its controller; trial actors get it from the job env
        os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
        kwargs["runtime_env"] = local_job_env(kwargs.get("runtime_env"))
    else:  # a cluster's resources are its own: ray.init refuses num_cpus/num_gpus there
        kwargs.pop("num_cpus", None)
        kwargs.pop("num_gpus", None)
    ray.init(**kwargs)
    return address == "local"


def local_job_env(runtime_env: dict | None) -> dict:
    """The job-wide runtime env of a local Ray we start (job-wide, tasks reuse the job's worker
    processes; a per-task runtime_env would start new ones for every epoch):

    - `MALLOC_ARENA_MAX=2`: decode tasks allocate many frame-sized buffers from several threads
      (decord, torch), and fewer malloc arenas keep their heap ~25% smaller at no measurable cost
      (a cluster sets it in its nodes' env);
    - no Ray Train preemption watcher (`PREEMPTION_WATCHER_ENV`, unless this process's env says
      otherwise): it polls for nodes being drained by a cloud autoscaler, which a local instance does
      not have; each Train run would start it as one more actor process (~1.5 s of CPU before the
      first batch on 2 cores);
    - `worker_hooks.setup_worker` in every worker process (see there; its own small module,
      because every worker process of the job imports it).
    """
    env = dict(runtime_env or {})
    env["env_vars"] = {"MALLOC_ARENA_MAX": "2", PREEMPTION_WATCHER_ENV: os.environ.get(PREEMPTION_WATCHER_ENV, "0"),
                       **env.get("env_vars", {})}
    env.setdefault("worker_process_setup_hook", "vfn.runtime.worker_hooks.setup_worker")
    return env


def quiet_ray_data() -> None:
    """Our progress line replaces Ray Data's per-operator bars and execution banners; a harmless
    shutdown race of its file listing prints no traceback here either (see `worker_hooks`)."""
    from ray.data import DataContext  # LAZY: ray.data only when a job reads data

    worker_hooks.quiet_work_queue_shutdown_race()
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def use_gpu(cfg: ExperimentConfig) -> bool:
    """`scaling.use_gpu`, with `auto` meaning: the cluster Ray is connected to has a GPU."""
    if isinstance(cfg.scaling.use_gpu, bool):
        return cfg.scaling.use_gpu
    return ray.cluster_resources().get("GPU", 0) >= 1


def worker_scaling(cfg: ExperimentConfig, gpu: bool) -> RayScalingConfig:
    """Ray Train's scaling for the config's workers: CPUs each, plus one GPU each when `gpu`."""
    s = cfg.scaling
    resources = {"CPU": s.cpus_per_worker, **({"GPU": 1} if gpu else {})}
    return RayScalingConfig(num_workers=s.num_workers, use_gpu=gpu, resources_per_worker=resources)


def check_resources(cfg: ExperimentConfig, gpu: bool, fixed: bool) -> None:
    """Workers plus one decode task must fit the cluster, or the run waits for data forever.

    `fixed`: a local Ray we started (no autoscaler can add nodes): too little is an error here,
    before any work. Elsewhere an autoscaler may still add nodes, so only say what is missing.
    """
    total = ray.cluster_resources()
    s = cfg.scaling
    need = {"CPU": s.num_workers * s.cpus_per_worker + cfg.data.decode_cpus, "GPU": s.num_workers if gpu else 0}
    short = [f"{need[r]:g} {r}s (has {total.get(r, 0):g})" for r in ("CPU", "GPU") if total.get(r, 0) < need[r]]
    if not short:
        return
    msg = (f"the run needs {s.num_workers} workers x {s.cpus_per_worker:g} CPU{' + 1 GPU' if gpu else ''} and "
           f"{cfg.data.decode_cpus:g} CPU for a decode task: {', '.join(short)}")
    if fixed:
        raise ConfigError(f"{msg}; lower scaling.num_workers, scaling.cpus_per_worker or data.decode_cpus")
    print(f"vfn: {msg} now; waiting for the autoscaler to add nodes (a fixed-size cluster would wait forever)",
          file=sys.stderr, flush=True)


class SplitDataConfig(RayDataConfig):
    """Train shards are equal (DDP needs the same step count on every worker); the validation
    split is streamed unevenly so every video is evaluated exactly once (Ray's default
    `equal=True` would drop up to num_workers - 1 of them)."""

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        output = [{} for _ in range(world_size)]
        hints = worker_node_ids if self._enable_shard_locality else None
        for name, ds in datasets.items():
            if ds.name is None:
                ds.set_name(name)
            ds = ds.copy(ds)
            ds.context.execution_options = self._resolve_execution_options(name)
            for i, split in enumerate(ds.streaming_split(world_size, equal=(name != "val"), locality_hints=hints)):
                output[i][name] = split
        return output
