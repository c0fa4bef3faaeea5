"""Hostile text planted through the core, for the pages to show: names, columns, classes, runs and notes written
as markdown images on an attacker's host, a bare URL and HTML (tests/test_hostile_text.py with AppTest,
tests/test_browser_hostile_text.py in Chromium)."""
import random

import recipe_core as rc
from recipe_core.config import TrainConfig
from recipe_core.data import ingest
from recipe_core.tracking.records import Comment, new_id
from recipe_core.training import runs


def image(host: str, n: int) -> str:
    """A markdown image on the attacker's host, numbered by the place it is planted in."""
    return f"![x]({host}/img-{n})"


def plant(settings, store, host: str) -> dict:
    """Hostile values planted through the core: a dataset whose file, name, columns (one deduplicated), text and
    classes are markdown images; a finished run, a failed run with a bare URL as its name, a child run named in
    HTML, a metric named as an image, and a note."""

    def img(n):
        return image(host, n)

    rng = random.Random(0)
    # Columns: an ID-like number, its duplicate (renamed ..._2), a text column, the target, a constant.
    lines = [",".join(f'"{h}"' for h in (img(1), img(1), img(2), img(3), img(4)))]
    for i in range(300):
        text = " ".join(rng.choice(["alpha", "beta", "gamma", img(5), "delta"]) for _ in range(12))
        lines.append(f'{i},{rng.random():.4f},"{text}","{img(6) if i % 3 else img(7)}","{img(8)}"')
    record = ingest.ingest_bytes(settings, store, ("\n".join(lines) + "\n").encode(),
                                   source_name=img(9) + ".csv", name=img(10))
    target = img(3)
    assert record.column_names[1] == img(1) + "_2"

    # A run trained for real (its checks, evaluation and views quote the classes), then renamed by an attacker.
    done = runs.create(store, record, target, TrainConfig(model="linear"))
    runs.execute(settings, store, done.id)
    store.update_run(done.id, name=img(11), author=img(12), hypothesis=img(13), tags=[img(14)],
                     config={**store.get_run(done.id).config, "exclude": [img(15)]})  # Tune lists the change
    failed = runs.create(store, record, target, TrainConfig(model="prior"))
    store.update_run(failed.id, status="failed", reason=img(16), name=f"{host}/link")
    with rc.start_run(name=f'<a href="{host}/html">child</a>', config={"lr": img(17)}, parent=done.id,
                      hypothesis=img(18), tags=[img(19)], dataset=record.id, target=target, author=img(20),
                      store_url=settings.store_url) as child:
        for step in range(20):
            child.log(step, **{"val_loss": 1 / (step + 1), img(25): step})
    store.add_comment(Comment(new_id(), done.id, img(21), img(22)))
    return {"dataset": record.id, "target": target, "done": done.id, "failed": failed.id, "child": child.run_id,
            "link": f"{host}/link", "child_name": f'<a href="{host}/html">child</a>'}
