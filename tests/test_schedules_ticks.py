"""Tick planning of the API's schedules, through Dagster's own sensor test context (`build_sensor_context`
with the `schedule_ticks` sensor) at fixed instants (time-machine): daylight-saving changes in Europe/Berlin
and America/New_York, each overlap policy, a disabled schedule, a deleted suite, missed ticks, and a tick
evaluated twice or by two evaluators at once making one run."""
import threading
from datetime import datetime, timezone

import dagster as dg
import pytest
import time_machine
from sqlalchemy import select, update

from eval_pipeline import service
from eval_pipeline.errors import InvalidInput
from eval_pipeline.orchestration.sensors import schedule_ticks
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.stores.catalog import tables as t
from resources import CatalogResource, LakeResource

ORG = "org_default"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def _create(home, **fields) -> dict:
    body = {"name": "nightly", "suite_id": home.suite_id, "run": {"models": ["tiny"]}, **fields}
    return service.create_schedule(home, body, org_id=ORG, team_id="team")


def _evaluate(home, when: datetime) -> None:
    """One evaluation of the `schedule_ticks` sensor at `when`, as the daemon would run it."""
    with time_machine.travel(when, tick=False), dg.build_sensor_context(
            instance=dagster_instance(home),
            resources={"catalog": CatalogResource(), "lake": LakeResource()}) as context:
        result = schedule_ticks(context)
        assert isinstance(result, dg.SkipReason)  # it queues eval runs; the queued_runs sensor launches them


def _runs(home, schedule_id: str) -> list[dict]:
    return service.schedule_runs(home, schedule_id, limit=100)


def _ticks(home, schedule_id: str) -> list[tuple[str, int, str]]:
    return [(tk["kind"], tk["tick_at"], tk["status"]) for tk in service.schedule_ticks(home, schedule_id)][::-1]


def _finish(home, run_id: str) -> None:
    with home.catalog.session() as s:
        s.execute(update(t.Run).where(t.Run.id == run_id).values(status="completed"))


@pytest.mark.parametrize("zone, cron, created, spring_instant, expected_tick", [
    # 02:00 does not exist on 2026-03-29 in Berlin (02:00 CET -> 03:00 CEST): the tick is at 03:00 CEST
    ("Europe/Berlin", "0 2 * * *", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 1)),
    # 02:00 does not exist on 2026-03-08 in New York (EST -> EDT): the tick is at 03:00 EDT
    ("America/New_York", "0 2 * * *", utc(2026, 3, 7, 12), utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 7)),
])
def test_a_wall_clock_time_skipped_in_spring_ticks_once_at_the_first_valid_time(
        eval_home, zone, cron, created, spring_instant, expected_tick):
    with time_machine.travel(created, tick=False):
        sched = _create(eval_home, cron=cron, timezone=zone)
    assert sched["next_run_at"] == int(expected_tick.timestamp())
    _evaluate(eval_home, utc(2026, 3, 29, 0, 30) if zone == "Europe/Berlin" else utc(2026, 3, 8, 6, 30))
    assert _runs(eval_home, sched["id"]) == []  # not yet due
    _evaluate(eval_home, spring_instant)
    made = _runs(eval_home, sched["id"])
    assert len(made) == 1 and made[0]["metadata"]["schedule_tick"] == f"tick:{int(expected_tick.timestamp())}"
    assert made[0]["status"] == "queued" and made[0]["system_tags"][0] == f"schedule:{sched['id']}"
    assert made[0]["generation"]["use_cache"] is False  # a night asks the model again
    # the next day's tick is back at 02:00 local time, now summer time
    got = service.get_schedule(eval_home, sched["id"])
    assert got["next_run_at"] == int(expected_tick.timestamp()) + 23 * 3600
    assert got["last_run_id"] == made[0]["id"] and got["last_run_status"] == "queued"


@pytest.mark.parametrize("zone, cron, created, first_pass, second_pass, expected_tick", [
    # 02:30 happens twice on 2026-10-25 in Berlin: once only, at the second (CET, 01:30 UTC), as Dagster does
    ("Europe/Berlin", "30 2 * * *", utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 1, 45),
     utc(2026, 10, 25, 1, 30)),
    # 01:30 happens twice on 2026-11-01 in New York: once, at the second (EST, 06:30 UTC)
    ("America/New_York", "30 1 * * *", utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 6, 45),
     utc(2026, 11, 1, 6, 30)),
])
def test_a_wall_clock_time_repeated_in_autumn_ticks_once(eval_home, zone, cron, created, first_pass, second_pass,
                                                         expected_tick):
    with time_machine.travel(created, tick=False):
        sched = _create(eval_home, cron=cron, timezone=zone, overlap_policy="allow_all")
    _evaluate(eval_home, first_pass)  # after the first occurrence of the wall-clock time
    assert _runs(eval_home, sched["id"]) == []
    _evaluate(eval_home, second_pass)
    _evaluate(eval_home, second_pass.replace(hour=second_pass.hour + 1))
    assert _ticks(eval_home, sched["id"]) == [("tick", int(expected_tick.timestamp()), "created")]
    assert len(_runs(eval_home, sched["id"])) == 1


def test_overlap_policies_when_the_previous_run_still_works(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        skip = _create(eval_home, name="skip", interval_seconds=60, overlap_policy="skip")
        buffer = _create(eval_home, name="buffer", interval_seconds=60, overlap_policy="buffer_one")
        allow = _create(eval_home, name="allow", interval_seconds=60, overlap_policy="allow_all")
    for minute in range(4):  # ticks at 12:00, 12:01, 12:02, 12:03; nothing executes the runs (they stay queued)
        _evaluate(eval_home, utc(2026, 6, 1, 12, minute, 5))
    noon = int(utc(2026, 6, 1, 12).timestamp())
    assert [s for _, _, s in _ticks(eval_home, skip["id"])] == ["created", "skipped", "skipped", "skipped"]
    assert len(_runs(eval_home, skip["id"])) == 1
    assert len(_runs(eval_home, allow["id"])) == 4
    # buffer_one keeps the newest tick only, and starts it once the working run has ended
    assert _ticks(eval_home, buffer["id"]) == [("tick", noon, "created"), ("tick", noon + 60, "skipped"),
                                                ("tick", noon + 120, "skipped"), ("tick", noon + 180, "buffered")]
    first = _runs(eval_home, buffer["id"])[0]["id"]
    _finish(eval_home, first)
    _evaluate(eval_home, utc(2026, 6, 1, 12, 3, 30))
    assert _ticks(eval_home, buffer["id"])[-1] == ("tick", noon + 180, "created")
    assert len(_runs(eval_home, buffer["id"])) == 2
    # trigger follows the same policy: the buffered run works, so a skip schedule's trigger is skipped
    _finish(eval_home, _runs(eval_home, skip["id"])[0]["id"])
    with time_machine.travel(utc(2026, 6, 1, 12, 3, 40), tick=False):
        assert service.trigger_schedule(eval_home, skip["id"])["trigger"]["status"] == "created"
        assert service.trigger_schedule(eval_home, skip["id"])["trigger"]["status"] == "created"  # same second
    with time_machine.travel(utc(2026, 6, 1, 12, 3, 41), tick=False):
        again = service.trigger_schedule(eval_home, skip["id"])["trigger"]
    assert again["status"] == "skipped" and "still working" in again["reason"]
    assert len(_runs(eval_home, skip["id"])) == 2


def test_disabled_schedules_do_not_tick_and_re_enabling_does_not_catch_up(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        sched = _create(eval_home, interval_seconds=60, enabled=False)
    assert sched["next_run_at"] is None
    _evaluate(eval_home, utc(2026, 6, 1, 12, 5))
    assert _runs(eval_home, sched["id"]) == []
    with time_machine.travel(utc(2026, 6, 1, 12, 5, 10), tick=False):
        enabled = service.update_schedule(eval_home, sched["id"], {"enabled": True})
    assert enabled["next_run_at"] == int(utc(2026, 6, 1, 12, 6).timestamp())
    _evaluate(eval_home, utc(2026, 6, 1, 12, 6, 1))
    assert len(_runs(eval_home, sched["id"])) == 1


def test_missed_ticks_make_one_run_for_the_latest(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        sched = _create(eval_home, interval_seconds=60, overlap_policy="allow_all")
    _evaluate(eval_home, utc(2026, 6, 1, 12, 7, 20))  # the evaluator was down from 12:00 to 12:07
    assert _ticks(eval_home, sched["id"]) == [("tick", int(utc(2026, 6, 1, 12, 7).timestamp()), "created")]
    assert service.get_schedule(eval_home, sched["id"])["next_run_at"] == int(utc(2026, 6, 1, 12, 8).timestamp())


def test_a_tick_evaluated_twice_or_by_two_evaluators_makes_one_run(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        sched = _create(eval_home, interval_seconds=60, overlap_policy="allow_all")
    at = utc(2026, 6, 1, 12, 0, 10).timestamp()
    barrier = threading.Barrier(4)

    def evaluator():
        barrier.wait()
        service.evaluate_schedules(eval_home, at=at)

    threads = [threading.Thread(target=evaluator) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    service.evaluate_schedules(eval_home, at=at)
    assert len(_runs(eval_home, sched["id"])) == 1
    assert len(_ticks(eval_home, sched["id"])) == 1


def test_a_tick_left_claimed_by_a_dead_evaluator_is_finished_once(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        sched = _create(eval_home, interval_seconds=3600, overlap_policy="allow_all")
    noon = int(utc(2026, 6, 1, 12).timestamp())
    # an evaluator claimed the noon tick (and moved next_run_at on) and died before making the run
    with eval_home.catalog.session() as s:
        s.add(t.ScheduleTick(id="eval_tick_dead", schedule_id=sched["id"], kind="tick", tick_at=noon,
                             status="claimed", created_at=noon, updated_at=noon))
        s.execute(update(t.Schedule).where(t.Schedule.id == sched["id"]).values(next_run_at=noon + 3600))
    _evaluate(eval_home, utc(2026, 6, 1, 12, 1))  # too soon to tell it from a slow evaluator
    assert _runs(eval_home, sched["id"]) == []
    _evaluate(eval_home, utc(2026, 6, 1, 12, 10))
    _evaluate(eval_home, utc(2026, 6, 1, 12, 20))
    assert _ticks(eval_home, sched["id"]) == [("tick", noon, "created")]
    assert len(_runs(eval_home, sched["id"])) == 1


def test_a_deleted_suite_takes_its_schedules_and_a_removed_model_fails_the_tick(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        sched = _create(eval_home, interval_seconds=60, run={"models": ["tiny"]})
        service.add_model(eval_home, "temporary", {"backend": "vllm", "path": "/nonexistent/model"})
        doomed = _create(eval_home, name="uses temporary", interval_seconds=60, run={"models": ["temporary"]})
    service.remove_model(eval_home, "temporary")
    _evaluate(eval_home, utc(2026, 6, 1, 12, 0, 5))
    failed = service.schedule_ticks(eval_home, doomed["id"])[0]
    assert failed["status"] == "failed" and "models[0]" in failed["reason"] and failed["run_id"] is None
    _evaluate(eval_home, utc(2026, 6, 1, 12, 1, 5))  # it keeps ticking (the model may come back)
    assert len(service.schedule_ticks(eval_home, doomed["id"])) == 2
    # it can still be switched off (its run is checked again when it is switched on)
    assert service.update_schedule(eval_home, doomed["id"], {"enabled": False})["enabled"] is False
    with pytest.raises(InvalidInput, match="run.models"):
        service.update_schedule(eval_home, doomed["id"], {"enabled": True})
    for run in _runs(eval_home, sched["id"]):
        service.cancel_run(eval_home, run["id"])
    service.delete_suite(eval_home, eval_home.suite_id, org_id=ORG)
    with eval_home.catalog.session() as s:
        assert s.scalars(select(t.Schedule)).all() == []
        assert s.scalars(select(t.ScheduleTick)).all() == []
    _evaluate(eval_home, utc(2026, 6, 1, 12, 2, 5))  # nothing left to tick, and no error


def test_a_buffered_tick_of_a_schedule_disabled_since_is_skipped(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        sched = _create(eval_home, interval_seconds=60, overlap_policy="buffer_one")
    _evaluate(eval_home, utc(2026, 6, 1, 12, 0, 5))
    _evaluate(eval_home, utc(2026, 6, 1, 12, 1, 5))
    assert [s for _, _, s in _ticks(eval_home, sched["id"])] == ["created", "buffered"]
    service.update_schedule(eval_home, sched["id"], {"enabled": False})
    _finish(eval_home, _runs(eval_home, sched["id"])[0]["id"])
    _evaluate(eval_home, utc(2026, 6, 1, 12, 2, 5))
    assert [s for _, _, s in _ticks(eval_home, sched["id"])] == ["created", "skipped"]
    assert len(_runs(eval_home, sched["id"])) == 1


def test_a_schedule_whose_next_tick_is_claimed_already_moves_on(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        sched = _create(eval_home, interval_seconds=60, overlap_policy="allow_all")
    noon = int(utc(2026, 6, 1, 12).timestamp())
    with eval_home.catalog.session() as s:  # claimed by an evaluator whose clock ran ahead, still working on it
        s.add(t.ScheduleTick(id="eval_tick_ahead", schedule_id=sched["id"], kind="tick", tick_at=noon,
                             status="claimed", created_at=noon, updated_at=noon))
    _evaluate(eval_home, utc(2026, 6, 1, 12, 0, 5))
    assert service.get_schedule(eval_home, sched["id"])["next_run_at"] == noon + 60
    _evaluate(eval_home, utc(2026, 6, 1, 12, 1, 5))
    assert [(tk_at - noon, st) for _, tk_at, st in _ticks(eval_home, sched["id"])] == [(0, "claimed"), (60, "created")]


def test_a_retried_scheduled_run_is_settled_again_when_it_ends_again(eval_home):
    with time_machine.travel(utc(2026, 6, 1, 11, 59, 30), tick=False):
        sched = _create(eval_home, interval_seconds=60)
    run_id = service.trigger_schedule(eval_home, sched["id"])["trigger"]["run_id"]
    with eval_home.catalog.session() as s:
        s.execute(update(t.Run).where(t.Run.id == run_id).values(status="failed"))
    assert [o["status"] for o in service.settle_scheduled_runs(eval_home)] == ["failed"]
    assert service.settle_scheduled_runs(eval_home) == []  # once
    service.retry_run(eval_home, run_id)
    with eval_home.catalog.session() as s:
        s.execute(update(t.Run).where(t.Run.id == run_id).values(status="completed"))
    (again,) = service.settle_scheduled_runs(eval_home)
    assert again["status"] == "completed" and again["error"] is None
    assert service.run_outcome(eval_home, run_id)["status"] == "completed"
