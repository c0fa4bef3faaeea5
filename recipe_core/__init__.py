"""Recipe's core: every piece of logic behind the pages and the CLI; never imports Streamlit.

For training scripts: `import recipe_core as rc; with rc.start_run(name=..., config={...}) as run: run.log(...)`.
"""


def __getattr__(name):
    # Lazy, so `import recipe_core.x` does not open the store machinery for modules that never log.
    if name in ("start_run", "Run"):
        from recipe_core.tracking import api

        return getattr(api, name)
    raise AttributeError(f"module 'recipe_core' has no attribute {name!r}")
