"""Recipe's core: every piece of logic behind the pages and the CLI; never imports Streamlit.

For training scripts: `import recipe_core as rc; with rc.start_run(name=..., config={...}) as run: run.log(...)`;
`run.watch(model)` and `run.check(model, batch=(x, y))` on that run, `rc.check_model(factory, x, y)` on its own.
"""


def start_run(*args, **kwargs):
    """tracking.api.start_run, returning a ScriptRun (a Run with watch() and check(); torch loads only for them)."""
    from recipe_core.tracking import api
    from recipe_core.training.script_run import ScriptRun

    kwargs.setdefault("run_class", ScriptRun)
    return api.start_run(*args, **kwargs)


def __getattr__(name):
    # Lazy, so `import recipe_core.x` does not open the store machinery (or torch) for modules that never use it.
    if name == "Run":
        from recipe_core.tracking import api

        return api.Run
    if name == "ScriptRun":
        from recipe_core.training.script_run import ScriptRun

        return ScriptRun
    if name in ("check_model", "CheckReport"):
        from recipe_core.training import own_model

        return getattr(own_model, name)
    raise AttributeError(f"module 'recipe_core' has no attribute {name!r}")
