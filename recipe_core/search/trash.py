"""The purge as pages and the CLI call it: tracking's purge (rows and files), then the Optuna studies of the
purged studies, which only search/ may touch (tracking never imports Optuna)."""
from __future__ import annotations

from recipe_core.config import Settings
from recipe_core.search import tuning
from recipe_core.tracking import lifecycle
from recipe_core.tracking.access import Identity
from recipe_core.tracking.store import Store


def purge(settings: Settings, store: Store, who: Identity, older_than_s: float | None = None,
          only: tuple[str, str] | None = None) -> lifecycle.PurgeReport:
    """lifecycle.purge, and the purged studies dropped from Optuna's tables."""
    report = lifecycle.purge(settings, store, who, older_than_s=older_than_s, only=only)
    if report.studies:
        tuning.purge_studies(store.url, report.studies)
    return report


def purge_expired(settings: Settings, store: Store, who: Identity) -> lifecycle.PurgeReport:
    """What the Team page's button and `purge` (without --all) do: only what is past the undo window."""
    return purge(settings, store, who, older_than_s=settings.undo_seconds)
