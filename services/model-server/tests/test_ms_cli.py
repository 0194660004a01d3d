"""``wma model-server`` flags: defaults and choices shown are the settings' own."""

from __future__ import annotations

import argparse

from wma_model_server.cli import register
from wma_model_server.settings import ModelServerSettings


def _actions() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest: a for a in sub.choices["model-server"]._actions}


def test_help_shows_each_settings_default_and_choices_without_overriding_env() -> None:
    actions = _actions()
    fields = ModelServerSettings.model_fields
    for name in ("backend", "host", "port", "device", "dtype", "max_batch", "max_queue_frames"):
        action = actions[name]
        assert action.default is None, name  # absent flag: WMA_MS_* still applies
        assert action.help is not None and f"(default {fields[name].default})" in action.help
    assert actions["backend"].choices == ["mock", "effort"]
    assert actions["dtype"].choices == ["auto", "float32", "tf32", "bfloat16", "float16"]
    assert actions["model_id"].required
