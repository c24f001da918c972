"""Records kmsync builds itself from values that are valid already: built or encoded without a second
pydantic validation, when validation would give every value back unchanged (issue #22).

``FastPath(Model)`` derives, once per model class, from the model's field metadata (annotation,
constraints such as ``min_length``/``gt``/``pattern``, config, validators) one check per field: the
test a value must pass for validation to keep it as it is. ``build(**fields)`` gives a Model instance
holding the values as given when every check passes, and ``Model(**fields)`` (validation: it strips,
converts or refuses, with pydantic's messages) otherwise; ``encode_values(values)`` does the same for
the record's JSON. Nothing is ever accepted unchecked by accident:

- a field whose type, constraint or validator the derivation does not understand has no check, and a
  model with such a field is always validated (``FastPath.reasons`` says why); so is a model with a
  model validator or a config key that changes validation;
- a field validator is understood only in ``after`` mode without ``info``: it is called on the value,
  which passes when the validator gives back that very value (a refusal goes to validation);
- a field is taken as given (not checked per value) only when the caller names a field of a contract
  its value was validated against, or a contracts type it made the value as (``given_by``), with the
  same type (or the same type or None), constraints and string config, and the model has no validator
  on it: a constraint the model gains makes the field checked again.

The checks of a model are compiled into one function, an inline expression per field (a call per
field cost more than the checks themselves).

The fast instance is made as pydantic's ``model_construct`` makes one (its ``__dict__`` in field order,
its fields set, no extra, no private), without ``model_construct``'s Python loop over the fields (13-19
µs per operation on pydantic 2.13 against 7-8 µs to validate): tests/contracts/test_trusted.py pins
that the result equals the validated model, bytes and fields set included, on the installed version.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from inspect import Parameter, signature
from itertools import count
from types import NoneType, UnionType
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

import annotated_types as at
import orjson
from pydantic import AwareDatetime, BaseModel, NaiveDatetime
from pydantic.fields import FieldInfo

from kmsync_contracts.codecs import plain_model

M = TypeVar("M", bound=BaseModel)
Check = Callable[[Any], bool]

#: Config keys the checks account for (anything else in a model's config sends it to validation).
_UNDERSTOOD_CONFIG = frozenset({"extra", "frozen", "str_strip_whitespace", "title", "defer_build"})
_new = object.__new__
_set = object.__setattr__
#: A required field's place in FastPath.template.
_MISSING = object()


class NotUnderstood(Exception):
    """A type, constraint or validator the checks cannot vouch for: the field is always validated."""


#: Attributes a check may carry: the exact types it accepts with no other test, and whether it accepts a
#: plain ``str`` with nothing to strip (its only other test): what dict and union checks batch.
_EXACT, _TEXT = "kmsync_exact", "kmsync_text"


#: A check of values that cannot change once checked (str, int, float, bool, None, datetime, literals).
_SCALAR = "kmsync_scalar"


#: A check's inline form: (a Python expression of ``{v}``, the names it uses), compiled into one function
#: per model (FastPath._compile): a call per field cost more than the checks themselves.
_EXPR = "kmsync_expr"
_names = count()


def _from_expr(text: str, names: dict[str, Any]) -> Check:
    """The check whose inline form is `text` (an expression of ``{v}``) with `names` bound: its callable is
    compiled from that very text, so the check called alone and the check inlined in a model's compiled
    function (FastPath._compile) cannot differ (review of issue #22: they were written twice)."""
    code = compile(f"lambda v: {text.format(v='v')}", f"<kmsync_contracts.trusted: {text}>", "eval")
    check: Check = eval(code, dict(names))  # kmsync's own templates and bound values, no outside text
    setattr(check, _EXPR, (text, names))
    return check


def _inline(template: str, **values: Any) -> Check:
    """The check of `template`: ``{v}`` for the value and ``{key}`` for each of `values` (bound by name)."""
    names = {key: f"_{key}{next(_names)}" for key in values}
    return _from_expr(template.format(v="{v}", **names), {names[k]: values[k] for k in values})


def _expr_of(check: Check) -> tuple[str, dict[str, Any]]:
    """A check's inline form; a call of it for one without."""
    found: tuple[str, dict[str, Any]] | None = getattr(check, _EXPR, None)
    if found is not None:
        return found
    name = f"_check{next(_names)}"
    return f"{name}({{v}})", {name: check}


def _marked(check: Check, exact: frozenset[type] = frozenset(), text: bool = False) -> Check:
    setattr(check, _EXACT, exact)
    setattr(check, _TEXT, text)
    return _scalar(check)


def _scalar(check: Check) -> Check:
    setattr(check, _SCALAR, True)
    return check


def _is(kind: type) -> Check:
    return _marked(_inline("type({v}) is {kind}", kind=kind), frozenset({kind}))


def _text_check(strip: bool) -> Check:
    if strip:  # str.strip removes at least what pydantic-core trims (tests/contracts/test_trusted.py)
        return _marked(_inline("(type({v}) is str and {v} == {v}.strip())"), text=True)
    return _is(str)


def _simple_parts(check: Check) -> tuple[frozenset[type], bool] | None:
    """(exact types, text) of a check that is nothing more; None for one that tests more."""
    exact: frozenset[type] | None = getattr(check, _EXACT, None)
    return None if exact is None else (exact, getattr(check, _TEXT))


#: Pattern syntax whose meaning differs between Python's re and pydantic-core's Rust regex (escapes such as
#: \s \w \d are Unicode-wide in one and not the other's way, POSIX classes, \z, flags, look-arounds): such a
#: pattern is not understood, its field always validated (review of issue #22).
_ENGINE_DEPENDENT = ("\\", "[:", "(?")


def _pattern_check(pattern: str) -> Check:
    # pydantic's pattern is searched (not matched at the start); Python's `$` also matches before a final
    # newline, the Rust engine's does not: a value with a newline is validated.
    if any(part in pattern for part in _ENGINE_DEPENDENT) or not pattern.isascii():
        raise NotUnderstood(f"pattern {pattern!r} (Python's re and pydantic's regex may read it apart)")
    compiled = re.compile(pattern)
    return _inline("('\\n' not in {v} and {compiled}.search({v}) is not None)", compiled=compiled)


def _bound(item: Any) -> Check | None:
    """A length or order constraint as a check, None for another item."""
    kind = type(item)
    if kind is at.MinLen:
        return _inline("len({v}) >= {low}", low=item.min_length)
    if kind is at.MaxLen:
        return _inline("len({v}) <= {high}", high=item.max_length)
    if kind is at.Gt:
        return _inline("{v} > {gt}", gt=item.gt)
    if kind is at.Ge:
        return _inline("{v} >= {ge}", ge=item.ge)
    if kind is at.Lt:
        return _inline("{v} < {lt}", lt=item.lt)
    if kind is at.Le:
        return _inline("{v} <= {le}", le=item.le)
    return None


def _constraint(item: Any) -> Check:
    """One metadata item (a constraint) as a check of a value already of the field's type."""
    bound = _bound(item)
    if bound is not None:
        return bound
    held = {k: v for k, v in getattr(item, "__dict__", {}).items() if v is not None}
    if type(item).__name__ == "_PydanticGeneralMetadata" and list(held) == ["pattern"]:
        return _pattern_check(held["pattern"])
    if type(item).__name__ == "_PydanticGeneralMetadata" and held == {"allow_inf_nan": False}:
        return math.isfinite
    raise NotUnderstood(f"constraint {item!r}")


def _all(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    forms = [_expr_of(c) for c in checks]
    return _from_expr("(" + " and ".join(f"({text})" for text, _ in forms) + ")",
                      {k: v for _, names in forms for k, v in names.items()})


def _constrained(base: Check, metadata: Iterable[Any]) -> Check:
    items = list(metadata)
    if _simple_parts(base) == (frozenset(), True) and len(items) == 1 and type(items[0]) is at.MinLen:
        return _scalar(_inline("(type({v}) is str and len({v}) >= {low} and {v} == {v}.strip())",
                               low=items[0].min_length))  # the common NonEmptyStr, in one expression
    check = _all([base, *(_constraint(item) for item in items)])
    return _scalar(check) if getattr(base, _SCALAR, False) and check is not base else check


def _literal_check(values: tuple[Any, ...]) -> Check:
    if all(type(v) is str for v in values):  # the common case: a str's hash is cached, no tuple made
        return _scalar(_inline("(type({v}) is str and {v} in {names})", names=frozenset(values)))
    if all(type(v) is int for v in values):  # a schema_version: True is not 1, an IntEnum member not its int
        return _scalar(_inline("(type({v}) is int and {v} in {names})", names=frozenset(values)))
    # The type first: a value of another type may be unhashable (a list), which validation refuses with its
    # message rather than the check raising TypeError.
    allowed = frozenset((type(v), v) for v in values)  # True is not 1, a StrEnum member not its str
    return _scalar(_inline("(type({v}) in {kinds} and (type({v}), {v}) in {allowed})",
                           kinds=frozenset(type(v) for v in values), allowed=allowed))


def _union_check(args: tuple[Any, ...], strip: bool) -> Check:
    """A value one member keeps as it is (same type, no conversion) is what smart-mode union validation
    gives back; checks of the other members never accept it, as each wants its exact type."""
    members = [type_check(a, strip) for a in args]
    parts = [_simple_parts(c) for c in members]
    if None in parts:
        return lambda v: any(c(v) for c in members)
    exact = frozenset().union(*(p[0] for p in parts if p))
    if not any(p[1] for p in parts if p):
        return _marked(_inline("type({v}) in {exact}", exact=exact), exact)
    check = _inline("(type({v}) in {exact} or (type({v}) is str and {v} == {v}.strip()))", exact=exact)
    return _marked(check, exact, text=True)


def _dict_check(key: Check, value: Check) -> Check:
    """dict[K, V]; one loop testing types and strings' ends inline when K is a plain string and V tests
    nothing but exact types and strings' ends (an operation's record: 1.6 µs for 20 entries against
    12 µs with a call per key and value)."""
    key_parts, value_parts = _simple_parts(key), _simple_parts(value)
    if key_parts != (frozenset(), True) or value_parts is None:
        return lambda v: type(v) is dict and all(key(k) and value(x) for k, x in v.items())
    exact, text = value_parts

    def check(v: Any) -> bool:
        if type(v) is not dict:
            return False
        for k, x in v.items():
            if type(k) is not str or k != k.strip():
                return False
            kind = type(x)
            if kind is str:
                if not text or x != x.strip():
                    return False
            elif kind not in exact:
                return False
        return True
    return check


def _tuple_check(item: Check) -> Check:
    """tuple[X, ...]; the last tuple of scalars accepted is remembered by identity (a tuple of immutable
    values cannot change: the dedupe fields a transformer passes every time are checked once)."""
    last: list[Any] = [_MISSING]  # not None: a None given before any tuple is no tuple
    remember = getattr(item, _SCALAR, False)

    def check(v: Any) -> bool:
        if v is last[0]:
            return True
        if type(v) is not tuple:
            return False
        for x in v:
            if not item(x):
                return False
        if remember:
            last[0] = v
        return True
    return check


def _container_check(origin: Any, args: tuple[Any, ...], strip: bool) -> Check:
    if origin is dict and len(args) == 2:
        return _dict_check(type_check(args[0], strip), type_check(args[1], strip))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _tuple_check(type_check(args[0], strip))
    if origin is tuple and args and Ellipsis not in args:
        forms = [_expr_of(type_check(a, strip)) for a in args]
        text = " and ".join([f"type({{v}}) is tuple and len({{v}}) == {len(forms)}",
                             *(f"({form.replace('{v}', f'{{v}}[{i}]')})" for i, (form, _) in enumerate(forms))])
        return _from_expr(f"({text})", {k: x for _, names in forms for k, x in names.items()})
    raise NotUnderstood(f"type {origin!r}{list(args)!r}")


def type_check(annotation: Any, strip: bool) -> Check:
    """The check of a value of `annotation` (constraints inside ``Annotated`` included), for a model
    that strips strings or not. Raises NotUnderstood for anything else."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        metadata = [m for a in args[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
        if any(isinstance(a, FieldInfo) and _field_extras(a) for a in args[1:]):
            raise NotUnderstood(f"field settings in {annotation!r}")
        return _constrained(type_check(args[0], strip), metadata)
    if origin is Literal:
        return _literal_check(args)
    if origin in (Union, UnionType):
        return _union_check(args, strip)
    if origin is not None:
        return _container_check(origin, args, strip)
    return _simple_check(annotation, strip)


def _whole_minutes(v: datetime) -> bool:
    """An aware datetime whose UTC offset is whole minutes."""
    offset = v.utcoffset()
    return offset is not None and not offset.seconds % 60 and not offset.microseconds


def _simple_check(annotation: Any, strip: bool) -> Check:
    if annotation is NoneType or annotation is None:
        return _is(NoneType)
    if annotation is str:
        return _text_check(strip)
    if annotation in (int, float, bool):
        return _is(annotation)
    if annotation is AwareDatetime:
        # UTC (kmsync's clocks) has an offset: utcoffset() is called for other zones only (0.35 µs).
        # An offset with seconds is valid, but orjson rounds it where pydantic-core truncates it: such a value
        # goes through the model (review of issue #22: "+00:19:32" written "+00:20").
        return _scalar(_inline("(type({v}) is {dt} and ({v}.tzinfo is {utc} or {whole}({v})))",
                               dt=datetime, utc=UTC, whole=_whole_minutes))
    if annotation is NaiveDatetime:
        return lambda v: type(v) is datetime and v.tzinfo is None
    if annotation is datetime:
        return _is(datetime)
    raise NotUnderstood(f"type {annotation!r}")


def _field_extras(info: FieldInfo) -> list[str]:
    """What a field declares besides its type, constraints and default that changes validation."""
    extras = [name for name in ("alias", "validation_alias", "discriminator") if getattr(info, name) is not None]
    return extras + [name for name in ("strict", "validate_default") if getattr(info, name, None)]


def _validator_check(func: Any, mode: str) -> Check:
    """A field validator the fast path can run itself: ``after`` mode and one argument (the value).
    The value passes when the validator returns that very value."""
    try:
        params = list(signature(func).parameters.values())
    except (TypeError, ValueError):
        raise NotUnderstood(f"validator {func!r}") from None
    if mode != "after" or len(params) != 1 or params[0].kind is Parameter.KEYWORD_ONLY:
        raise NotUnderstood(f"{mode} validator {getattr(func, '__name__', func)!r}")

    def check(v: Any) -> bool:
        try:
            return func(v) is v
        except (ValueError, AssertionError):
            return False  # validation refuses it, with its message
    return check


def _model_refusals(model: type[BaseModel]) -> list[str]:
    """Why the model as a whole is always validated: config or validators the checks do not cover."""
    reasons = [f"config {key}" for key in model.model_config if key not in _UNDERSTOOD_CONFIG]
    if model.model_config.get("extra") != "forbid":  # "ignore" drops an unknown key, which build() refuses
        reasons.append(f"config extra={model.model_config.get('extra')}")
    if model.__private_attributes__:
        reasons.append("private attributes")
    if model.model_post_init is not BaseModel.model_post_init:
        reasons.append("model_post_init")
    decorators = model.__pydantic_decorators__  # no public equivalent: tests/contracts/test_trusted.py pins it
    if decorators.model_validators or decorators.root_validators:
        reasons.append("a model validator")
    if decorators.validators:
        reasons.append("a v1 validator")
    return reasons


def _annotated_check(annotation: Any, metadata: list[Any], strip: bool) -> Check:
    """A field's type with its constraints: pydantic applies an optional field's to the value when it is
    not None; constraints on another union are not understood."""
    args = get_args(annotation)
    if metadata and get_origin(annotation) in (Union, UnionType):
        rest = [a for a in args if a is not NoneType]
        if len(rest) != 1 or len(args) != 2:
            raise NotUnderstood(f"constraints on {annotation!r}")
        inner = _constrained(type_check(rest[0], strip), metadata)
        text, names = _expr_of(inner)
        return _from_expr(f"({{v}} is None or ({text}))", names)
    return _constrained(type_check(annotation, strip), metadata)


def field_check(model: type[BaseModel], name: str) -> Check:
    """The check a value of the model's field must pass to be kept as given (NotUnderstood if none)."""
    info = model.model_fields[name]
    if _field_extras(info):
        raise NotUnderstood(f"{name}: {', '.join(_field_extras(info))}")
    strip = bool(model.model_config.get("str_strip_whitespace"))
    checks = [_annotated_check(info.annotation, info.metadata, strip)]
    for decorator in model.__pydantic_decorators__.field_validators.values():
        if name in decorator.info.fields or "*" in decorator.info.fields:
            checks.append(_validator_check(decorator.func, decorator.info.mode))
    return _all(checks)


#: What a caller vouches a field's value was validated as: a field of a contract (the record it was
#: copied from) or, for a value kmsync made itself, a type of kmsync_contracts (e.g. ``dict[str, Scalar]``:
#: made of those types, strings with nothing to strip).
Source = tuple[type[BaseModel], str] | Any


def _signature(source: Source, strip: bool | None = None) -> tuple[str, str, bool]:
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], type):
        model, name = source
        info = model.model_fields[name]
        return repr(info.annotation), repr(info.metadata), bool(model.model_config.get("str_strip_whitespace"))
    info = FieldInfo.from_annotation(source)
    return repr(info.annotation), repr(info.metadata), bool(strip)


def _has_validator(model: type[BaseModel], name: str) -> bool:
    return any(name in d.info.fields or "*" in d.info.fields
               for d in model.__pydantic_decorators__.field_validators.values())


def given_fields(model: type[BaseModel], given_by: Mapping[str, Source]) -> frozenset[str]:
    """The fields taken as given: the value was validated as (or made to be) a source of the field's very
    type, constraints and string config, and the model has no validator of its own on the field. A
    constraint or validator the model gains makes the field checked again."""
    strip = bool(model.model_config.get("str_strip_whitespace"))
    return frozenset(name for name, source in given_by.items()
                     if name in model.model_fields and _implies(_signature(source, strip), (model, name))
                     and not _has_validator(model, name) and not _field_extras(model.model_fields[name])
                     and _source_keeps_its_type(source))


def _source_keeps_its_type(source: Source) -> bool:
    """Whether a value validated as `source` is what the source field declares: a source model's validator
    (a plain or wrap one on the field, a model validator) could let other values through (review, issue #22)."""
    if not (isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], type)):
        return True  # a type: what it declares is all there is
    model, name = source
    decorators = model.__pydantic_decorators__
    return not (_has_validator(model, name) or decorators.model_validators or decorators.root_validators
                or decorators.validators)


def _implies(source: tuple[str, str, bool], target: tuple[type[BaseModel], str]) -> bool:
    """Whether a value validated as `source` passes the target field unchanged: the very same type and
    constraints, or the target is that type or None (``X | None``) with the same constraints."""
    if source == _signature(target):
        return True
    model, name = target
    info = model.model_fields[name]
    args = get_args(info.annotation)
    if get_origin(info.annotation) not in (Union, UnionType) or len(args) != 2 or NoneType not in args:
        return False
    (inner,) = (a for a in args if a is not NoneType)
    return source == (repr(inner), repr(info.metadata), bool(model.model_config.get("str_strip_whitespace")))


def copied_from(source: type[BaseModel], *names: str) -> dict[str, Source]:
    """``given_by`` for fields copied under their own name from a record validated as `source`."""
    return {name: (source, name) for name in names}


#: Types whose values orjson writes as pydantic-core does (UTC as Z with OPT_UTC_Z, microseconds, offsets,
#: string escapes: tests/marketo_sink/test_hot_path.py); floats are not among them (``1e16``, ``5e-07``).
_ORJSON_TYPES = (str, int, bool, NoneType, datetime, AwareDatetime, NaiveDatetime)


def _orjson_safe(annotation: Any) -> bool:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return all(type(a) in (str, int) for a in args)
    if origin is Annotated:
        return _orjson_safe(args[0])
    if origin in (Union, UnionType):
        return all(_orjson_safe(a) for a in args)
    return origin is None and annotation in _ORJSON_TYPES


def _refuse(fields: Mapping[str, Any]) -> bool:
    return False


def _compile(
    checked: tuple[tuple[str, Check], ...], required: Iterable[str] = (),
) -> Callable[[Mapping[str, Any]], bool]:
    """One function testing every checked field present in a mapping, each check inline where it has an
    inline form (a call of it otherwise): 1.2 µs for an operation's five checked fields, against 2.5 µs
    with a call per field. With `required`, it is also false when one of those fields is missing (what
    build tests in the same pass: session 10, 0.3 µs less than a set comparison of the keys)."""
    namespace: dict[str, Any] = {}
    needed = set(required)
    unchecked = [name for name in required if name not in dict(checked)]
    lines = ["def accepts(f):"]
    if unchecked:
        lines += [f"    if not ({' and '.join(f'{name!r} in f' for name in unchecked)}):", "        return False"]
    for name, check in checked:
        text, names = _expr_of(check)
        namespace.update(names)
        test = [f"if not ({text.format(v='v')}):", "    return False"]
        if name in needed:
            lines += [f"    if {name!r} not in f:", "        return False", f"    v = f[{name!r}]",
                      *(f"    {line}" for line in test)]
        else:
            lines += [f"    if {name!r} in f:", f"        v = f[{name!r}]", *(f"        {line}" for line in test)]
    lines.append("    return True")
    exec(compile("\n".join(lines), f"<kmsync_contracts.trusted: {len(checked)} checks>", "exec"), namespace)
    accepts: Callable[[Mapping[str, Any]], bool] = namespace["accepts"]
    return accepts


class FastPath(Generic[M]):
    """``FastPath(Model).build(**fields)``: a Model of `fields` (plus its constant defaults), validated only
    when a value fails its field's check; ``encode_values`` writes such a record's JSON."""

    def __init__(self, model: type[M], given_by: Mapping[str, Source] | None = None) -> None:
        self.model = model
        #: Every field in the model's order: its constant default, or _MISSING (to be given).
        self.template: dict[str, Any] = {}
        #: The fields in the model's order: encode_values writes a dict's keys in its own order.
        self._names = tuple(model.model_fields)
        for name, info in model.model_fields.items():
            constant = info.default_factory is None and not info.is_required()
            self.template[name] = info.default if constant else _MISSING
        #: Fields made by their default factory when not given (a factory taking the data is not understood).
        self.factories = {name: info.default_factory for name, info in model.model_fields.items()
                          if info.default_factory is not None}
        self.required = frozenset(name for name, value in self.template.items()
                                  if value is _MISSING and name not in self.factories)
        self.given = given_fields(model, given_by or {})
        #: Why every record of the model is validated (empty: the fast path is open).
        self.reasons: list[str] = _model_refusals(model)
        self.reasons += [f"{name}: a default factory taking the data" for name, info in model.model_fields.items()
                         if getattr(info, "default_factory_takes_data", False)]
        self.checks: dict[str, Check] = {}
        for name in model.model_fields:
            try:
                self.checks[name] = field_check(model, name)
            except NotUnderstood as why:
                self.reasons.append(f"{name}: {why}")
        self._checked = tuple((n, c) for n, c in self.checks.items() if n not in self.given)
        self._accepts = _compile(self._checked) if not self.reasons else _refuse
        #: The same, and false when a required field is missing (build's test).
        self._complete = _compile(self._checked, [n for n in self._names if n in self.required]) \
            if not self.reasons else _refuse
        self.open = not self.reasons
        #: Whether orjson writes the record's fields as encode() does (encode_values).
        self.orjson_writes = plain_model(model) and all(_orjson_safe(i.annotation) for i in model.model_fields.values())

    def accepts(self, fields: Mapping[str, Any]) -> bool:
        """Whether validating `fields` would keep every value as it is (a field not given keeps its default,
        which validation does not check either)."""
        return self._accepts(fields)

    def build(self, **fields: Any) -> M:
        if not self._complete(fields):
            if self.open and not self.required <= fields.keys():
                raise TypeError(self._wrong(fields))
            return self.model(**fields)
        values = {**self.template, **fields}  # a given field keeps its place in the model's order; an unknown one
        if len(values) != len(self.template):  # is added
            raise TypeError(self._wrong(fields))
        for name, factory in self.factories.items():
            if name not in fields:
                values[name] = factory()  # type: ignore[call-arg]
        instance = _new(self.model)
        _set(instance, "__dict__", values)
        _set(instance, "__pydantic_fields_set__", set(fields))
        _set(instance, "__pydantic_extra__", None)
        _set(instance, "__pydantic_private__", None)
        return instance

    def encode_values(self, values: dict[str, Any]) -> bytes:
        """``encode(Model(**values))``, byte for byte, from `values` (every field, in the model's order, for
        a plain model: codecs.plain_model) with orjson when they pass; through the model otherwise, and
        where orjson refuses a value (a lone surrogate; an integer beyond 64 bits)."""
        if self.orjson_writes and tuple(values) == self._names and self.accepts(values):
            try:
                return orjson.dumps(values, option=orjson.OPT_UTC_Z)
            except orjson.JSONEncodeError:
                pass
        record = self.model(**values)
        return record.__pydantic_serializer__.to_json(record)

    def _wrong(self, fields: Mapping[str, Any]) -> str:
        unknown = sorted(set(fields) - set(self.template))
        if unknown:
            return f"{self.model.__name__} has no field {', '.join(unknown)}"
        return f"{self.model.__name__} needs its field {', '.join(sorted(self.required - fields.keys()))}"
