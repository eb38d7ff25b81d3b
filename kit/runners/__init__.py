"""Runners: every artifact file in every runtime kit checks it in (:mod:`.registry`), one
module per runtime beside it (:mod:`kit.catalogue` says which)."""

from __future__ import annotations

from .registry import (
    Backend,
    Runner,
    RunnerOptions,
    artifact_label,
    backend,
    covered_formats,
    home_select,
    in_chunks,
    make_runners,
    register,
    register_family,
    runtimes,
)

__all__ = [
    "Backend",
    "Runner",
    "RunnerOptions",
    "artifact_label",
    "backend",
    "covered_formats",
    "home_select",
    "in_chunks",
    "make_runners",
    "register",
    "register_family",
    "runtimes",
]
