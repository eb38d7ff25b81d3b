"""Bounded field types for what kit reads back from files (results, parity reports): a forged
value fails validation as it is read, never in a later computation."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["Count", "Duration", "Name", "Rate", "Share", "Size", "Text"]

Text = Annotated[str, msgspec.Meta(max_length=4000)]
Name = Annotated[str, msgspec.Meta(max_length=300)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Size = Annotated[float, msgspec.Meta(ge=0.0, le=1e300)]
#: a time in milliseconds or seconds: at least a nanosecond, at most a day and some
Duration = Annotated[float, msgspec.Meta(ge=1e-9, le=1e8)]
Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
