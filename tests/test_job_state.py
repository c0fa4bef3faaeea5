"""Background commands (a search or a learning curve driving its runs) as real processes: each has its own log and
record, a failed start reads failed with its own error line, a running one reads running and can be cancelled or
stopped; a training job that dies says why in its reason."""
from pathlib import Path

from trained import wait_for

from recipe_core.config import TrainConfig
from recipe_core.search import learning_curve
from recipe_core.training import jobs, runs


def ended(settings, command):
    return wait_for(lambda: (s := jobs.command_state(settings, command)) and not s.active and s)


def test_a_command_that_fails_reads_failed_with_its_own_error_line(settings, store, wine):
    command = jobs.start_command(settings, ["tune", "no-such-dataset", "--target", "x", "--trials", "2"],
                                 label="study:nope")
    assert jobs.command_state(settings, command).status == "running"  # at once: never "nothing known"
    state = ended(settings, command)
    assert state.status == "failed" and state.exit_code == 2
    assert state.error.startswith("error: ") and "no-such-dataset" in state.error and "\n" not in state.error
    assert Path(command.log).parent == settings.home / "jobs"  # its own log, not a shared jobs.log
    assert jobs.latest_command(settings, "study:nope") == command  # found again by a page after a reload
    assert jobs.get_command(settings, command.id) == command


def test_a_spec_is_handed_over_in_a_file_of_the_job(settings, store, wine):
    space = '[{"name": "l2", "kind": "log", "low": 0, "high": 1}]'  # refused by the CLI: "start above 0"
    command = jobs.start_command(settings, ["tune", "wine", "--target", "cultivar", "--model", "linear",
                                            "--trials", "2"], files={"--space-file": space})
    i = command.argv.index("--space-file")
    assert Path(command.argv[i + 1]).read_text() == space and Path(command.argv[i + 1]).parent == settings.home / "jobs"
    state = ended(settings, command)
    assert state.status == "failed" and "start above 0" in state.error


def test_a_running_learning_curve_can_be_stopped_and_a_starting_command_cancelled(settings, store, wine):
    parent = runs.create(store, wine, "cultivar", TrainConfig(model="mlp", epochs=100_000, checks=False))
    command = jobs.start_command(settings, ["learning-curve", parent.id, "--seeds", "1", "--fractions", "1"],
                                 label=f"curve-of:{parent.id}")
    child = wait_for(lambda: next((r for r in store.list_runs() if r.parent_id == parent.id
                                   and store.metric_history([r.id], ["train_loss"])), None), timeout=180)
    assert jobs.command_state(settings, command).status == "running"
    (tag,) = [t for t in child.tags if t.startswith(learning_curve.TAG)]
    assert learning_curve.request_stop(store, tag[len(learning_curve.TAG):]) == 1
    assert ended(settings, command).status == "finished"  # its runs ended, so it ended by itself
    assert store.get_run(child.id).status == "cancelled"

    slow = jobs.start_command(settings, ["learning-curve", parent.id, "--seeds", "1", "--fractions", "1"])
    assert jobs.cancel_command(settings, slow)
    assert ended(settings, slow).status == "cancelled"
    assert not jobs.cancel_command(settings, slow)  # already over


def test_a_training_job_that_dies_on_bad_input_says_why(settings, store, wine, monkeypatch):
    run = runs.create(store, wine, "cultivar", TrainConfig(model="linear"))
    monkeypatch.setenv("RECIPE_JOB_MEMORY_MB", "not-a-number")  # the job's own settings refuse to load
    jobs.start(settings, store, run.id)
    failed = wait_for(lambda: (r := store.get_run(run.id)) and not r.active and r, timeout=60)
    assert failed.status == "failed" and "exit code 2" in failed.reason and "error: " in failed.reason
    assert (settings.home / "jobs" / f"run-{run.id}.log").exists()


def test_cancelling_a_search_stops_it_and_cancels_its_waiting_trials(settings, store, wine):
    import optuna

    from recipe_core.search import tuning

    optuna.create_study(study_name="s1", storage=tuning.optuna_storage(settings.store_url))
    trial = runs.create(store, wine, "cultivar", TrainConfig(model="linear"))
    store.update_run(trial.id, tags=("study:s1",))
    other = runs.create(store, wine, "cultivar", TrainConfig(model="linear"))
    assert tuning.cancel(store, "s1") == 1
    assert tuning.stop_requested(tuning.load(settings.store_url, "s1"))
    assert store.get_run(trial.id).status == "cancelled" and store.get_run(other.id).status == "queued"
