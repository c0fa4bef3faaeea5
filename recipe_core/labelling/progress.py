"""One person's place in the labelling sample: their labels, how many items they cover, where they resume."""
from __future__ import annotations

from dataclasses import dataclass

from recipe_core.labelling.labels import Baseline, latest

TEXT_SHOWN_CHARS = 5000  # of a text column on the item: enough to judge it, little enough for the browser


@dataclass(frozen=True)
class Progress:
    mine: dict  # item -> this person's latest event for it (a skip has label None)
    done: int  # items of the sample they have labelled or skipped
    n_items: int
    resume_at: int  # position of the first item not labelled yet (0 once all are)

    @property
    def finished(self) -> bool:
        """Only then are the others' labels shown: seeing them first would bias the baseline."""
        return self.done == self.n_items


def progress(base: Baseline, events: list, annotator: str) -> Progress:
    mine = {item: e for (who, item), e in latest(events).items() if who == annotator}
    return Progress(mine=mine, done=sum(1 for i in base.items if i in mine), n_items=len(base.items),
                    resume_at=next((k for k, i in enumerate(base.items) if i not in mine), 0))


def shown_text(value) -> str:
    return str(value)[:TEXT_SHOWN_CHARS]
