"""Code that every worker process of a local Ray job runs at start-up (`worker_process_setup_hook`).

Its own module with nothing but `os` and `ray` imported: each of the job's worker processes (a run
starts dozens: Train workers, controllers, Ray Data's coordinators, decode tasks) imports it, and
importing `ray_setup` (Ray Train, the config schema) instead costs ~0.7 s of CPU per process.
"""

from __future__ import annotations

import os
import threading

import ray


def setup_worker() -> None:
    """The job's `worker_process_setup_hook`."""
    pin_state_api_address()
    quiet_work_queue_shutdown_race()


def pin_state_api_address() -> None:
    """Point Ray's State API in this worker at the cluster the worker belongs to.

    With no address, Ray's State API (`ray.util.state`) connects to the cluster named in
    `/tmp/ray/ray_current_cluster`, which `ray start` and `ray.cluster_utils.Cluster` write and
    `ray.init(address="local")` does not. Ray Train's `PlacementGroupCleaner` actor asks the State
    API every second whether the Train controller is alive; with a stale file it waits ~40 s on a
    dead GCS instead, every controller's shutdown waits 12 s for the cleaner to stop, and a
    controller that dies (a trial Tune stops) leaves its workers' placement group reserved.
    Ray reads `RAY_ADDRESS` before that file.
    """
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def quiet_work_queue_shutdown_race() -> None:
    """Drop the `InterruptedError` traceback that Ray Data's file listing (Ray 2.60,
    `dynamic_work_queue.parallel_process_work_stealing`) can print at the end of a listing.

    Its `completion-signaler` thread posts the end-of-results marker, then one stop marker per worker
    thread. Meanwhile the consumer may already have taken the first marker and shut the pool down.
    Each stop marker is then refused with an `InterruptedError` that nothing catches, and Python
    prints "Exception in thread ...". The listing itself is complete, so a normal run shows an
    alarming, meaningless traceback. Every other uncaught thread exception still reaches the
    previous hook. Idempotent.
    """
    previous = threading.excepthook
    if getattr(previous, "vfn_quiet_work_queue", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        thread_name = args.thread.name if args.thread is not None else ""
        if args.exc_type is InterruptedError and thread_name.endswith("completion-signaler"):
            return
        previous(args)

    hook.vfn_quiet_work_queue = True
    threading.excepthook = hook
