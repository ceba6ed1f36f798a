"""Typed records <-> JSON, with validation on read.

The worker protocol (``jobs.py``) and the manifest (``manifest.py``) are dataclasses. ``load``
builds one from parsed JSON and checks every field against its annotation (str, int, float,
bool, optional, list, dict, StrEnum, nested records, and types with ``from_dict``/``to_dict``
such as ``Contract``; a record itself defines neither), raising ``RecordError`` that names the
field path (``manifest.artifacts.onnx.status``) and what was wrong. ``dump`` is the inverse.
Nothing here knows about torch, TensorFlow or bundles.
"""
from __future__ import annotations

import dataclasses
import enum
import types
import typing
from functools import cache
from typing import Any, TypeVar, Union

T = TypeVar("T")


class RecordError(ValueError):
    """A record that does not have the shape its type says; the message names the field."""


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def load(cls: type[T], data: Any, where: str = "") -> T:
    """``data`` (parsed JSON) as a ``cls`` record; unknown keys are ignored, missing keys take
    the field's default, or are an error when it has none."""
    return _convert(cls, data, where or cls.__name__)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except RecordError as e:
                errors.append(str(e))
        raise RecordError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {_show(value)}")
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {_show(value)}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {_show(value)}")
        key_t, val_t = typing.get_args(tp) or (str, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise RecordError(f"{where}: keys must be strings, got {_show(k)}")
            out[k] = _convert(val_t, v, f"{where}.{k}")
        return out
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            known = ", ".join(str(m.value) for m in tp)
            raise RecordError(f"{where}: unknown value {_show(value)} (one of {known})") from None
    if isinstance(tp, type) and hasattr(tp, "from_dict"):
        try:
            return tp.from_dict(value)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise RecordError(f"{where}: invalid {tp.__name__} ({type(e).__name__}: {e})") from None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {_show(value)}")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            if f.name in value:
                kwargs[f.name] = _convert(_hints(tp)[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}: missing {f.name!r}")
        return tp(**kwargs)
    if tp is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise RecordError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where}: expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecordError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"records: no rule for {tp!r} at {where}")  # a bug in a record definition


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def dump(obj: Any) -> Any:
    """A record (or anything holding records) as plain JSON data; None fields are kept."""
    if hasattr(obj, "to_dict") and not isinstance(obj, type):  # Contract and other self-serialising types
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: dump(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: dump(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [dump(v) for v in obj]
    return obj
