"""Trial schedulers by name: every name a sweep may give has a builder, and the builders make
what the name says."""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler

from vfn.config.names import SCHEDULERS
from vfn.config.sweep import SchedulerSpec
from vfn.tuning.schedulers import BUILDERS, build_scheduler


def test_every_scheduler_name_has_a_builder_and_every_builder_a_name():
    assert set(BUILDERS) == set(SCHEDULERS)


def test_asha_stops_on_epochs_and_runs_one_past_the_last_by_default():
    asha = build_scheduler(SchedulerSpec(type="asha", grace_period=2, reduction_factor=3), epochs=6)
    assert isinstance(asha, ASHAScheduler)
    assert asha._time_attr == "training_iteration" and asha._max_t == 7 and asha._reduction_factor == 3
    assert build_scheduler(SchedulerSpec(type="asha", max_t=4), epochs=6)._max_t == 4


def test_fifo_and_no_scheduler_are_tunes_default():
    assert build_scheduler(SchedulerSpec(type="fifo"), epochs=6) is None
    assert build_scheduler(None, epochs=6) is None
