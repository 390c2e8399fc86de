"""Reading workload inventories (DESIGN.md §4.1) from YAML and CSV files into `Workload` objects.

This module owns the two file layouts (the `workloads:` YAML list and its CSV flattening) and the
translation of every way such a file can be wrong into ONE `InputError` line that names the file,
the workload (its id, else the YAML item / CSV line), the dotted field and what was expected:

    fleet.yaml: workload 'llm-pretrain': checkpoint.save_seconds: expected a number >= 0, got 'abc'

The field rules themselves live in `spotplan.models`; this module only feeds them and explains
their verdicts. It is pure apart from reading the files it is given.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import re
import types
import typing
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from spotplan.errors import InputError
from spotplan.models import Workload

__all__ = ["read_inventory", "read_inventories", "parse_inventory_text", "CSV_COLUMNS"]

Format = Literal["yaml", "csv"]

_YAML_SUFFIXES = (".yaml", ".yml", ".json")
_CSV_SUFFIXES = (".csv",)


# ---- the shape of a workload, derived from the models so CSV columns never drift from them ----


def _unwrap_optional(ann: Any) -> Any:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, info in model.model_fields.items():
        ann = _unwrap_optional(info.annotation)
        if _is_model(ann):
            yield from _leaf_paths(ann, (*prefix, name))
        else:
            yield (*prefix, name)


#: CSV column -> the field path it fills: "checkpoint_interval_minutes" -> (checkpoint, interval_minutes).
CSV_COLUMNS: dict[str, tuple[str, ...]] = {"_".join(p): p for p in _leaf_paths(Workload)}
_REQUIRED = tuple(name for name, info in Workload.model_fields.items() if info.is_required())


def _leaf_annotation(path: tuple[str, ...]) -> Any:
    model: Any = Workload
    ann: Any = None
    for part in path:
        ann = _unwrap_optional(model.model_fields[part].annotation)
        model = ann
    return ann


_LIST_COLUMNS = frozenset(c for c, p in CSV_COLUMNS.items() if typing.get_origin(_leaf_annotation(p)) is list)
_MAP_COLUMNS = frozenset(c for c, p in CSV_COLUMNS.items() if typing.get_origin(_leaf_annotation(p)) is dict)

# A checkpoint trigger carries free-form settings that migrate reads (ssh host, docker container,
# signal/pid/process); YAML can say them directly, so CSV gets a column for each.
CSV_COLUMNS.update(
    {
        f"launch_checkpoint_trigger_{name}": ("launch", "checkpoint_trigger", name)
        for name in ("host", "container", "signal", "pid", "process")
    }
)


# ---- public API ------------------------------------------------------------------------------


def read_inventory(path: Path) -> list[Workload]:
    """Read one YAML or CSV inventory file; ids must be unique within it."""
    return read_inventories([path])


def read_inventories(
    paths: Sequence[Path], known_instance_types: Mapping[str, Collection[str]] | None = None
) -> list[Workload]:
    """Read and concatenate several inventory files; ids must be unique across all of them.

    `known_instance_types` maps a provider to the instance types the price table knows; when given,
    a workload whose provider is in it must name one of them (a near miss gets a "did you mean").
    Providers absent from the mapping are not checked.
    """
    if isinstance(paths, (str, Path)):
        paths = [Path(paths)]
    if not paths:
        raise InputError("no inventory file given")
    return _collect((_Source.from_path(Path(p)) for p in paths), known_instance_types)


def parse_inventory_text(
    text: str,
    *,
    origin: str = "<inventory>",
    fmt: Format | None = None,
    known_instance_types: Mapping[str, Collection[str]] | None = None,
) -> list[Workload]:
    """Parse an inventory given as text (e.g. from stdin); `origin` names it in error messages."""
    return _collect([_Source(origin, text, fmt or _sniff(text))], known_instance_types)


def _collect(sources: Iterable[_Source], known_instance_types: Mapping[str, Collection[str]] | None) -> list[Workload]:
    checker = _TypeChecker(known_instance_types) if known_instance_types is not None else None
    first_seen: dict[str, str] = {}
    out: list[Workload] = []
    for source in sources:
        for workload, subject, item in source.workloads():
            first = first_seen.get(workload.id)
            if first is not None:
                raise InputError(
                    f"{source.origin}: {subject}: id: duplicate id {workload.id!r} (first defined in {first})"
                )
            first_seen[workload.id] = source.origin + (f" line {item.line}" if source.fmt == "csv" else "")
            if checker is not None:
                problem = checker.problem(workload)
                if problem:
                    raise InputError(f"{source.origin}: {subject}: instance_type: {problem}")
            out.append(workload)
    return out


# ---- one file --------------------------------------------------------------------------------


@dataclass
class _Item:
    data: Any  # YAML: whatever the list held; CSV: {column: non-empty cell}
    index: int  # 1-based position among the workloads
    line: int | None  # CSV: the line the row starts on; YAML: found lazily, only for errors


class _FieldError(Exception):
    """A cell that cannot even be handed to the model (a CSV list or label cell)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _Source:
    """One inventory's text and format, and how to name its items in messages."""

    def __init__(self, origin: str, text: str, fmt: Format) -> None:
        self.origin = origin
        self.text = text
        self.fmt = fmt
        self._yaml_lines: list[int] | None = None

    @classmethod
    def from_path(cls, path: Path) -> _Source:
        origin = str(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{origin}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{origin}: is a directory, expected a YAML or CSV inventory file") from None
        except OSError as exc:
            raise InputError(f"{origin}: cannot read: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise InputError(
                f"{origin}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); expected a YAML or CSV inventory"
            ) from None
        suffix = path.suffix.lower()
        fmt: Format
        if suffix in _YAML_SUFFIXES:
            fmt = "yaml"
        elif suffix in _CSV_SUFFIXES:
            fmt = "csv"
        else:
            fmt = _sniff(text)
        return cls(origin, text, fmt)

    def workloads(self) -> Iterator[tuple[Workload, str, _Item]]:
        items = _yaml_items(self) if self.fmt == "yaml" else _csv_items(self)
        for item in items:
            subject = self.subject(item)
            data = item.data
            try:
                if self.fmt == "csv":
                    data = _csv_nested(data)
                workload = Workload.model_validate(data)
            except _FieldError as exc:
                raise InputError(f"{self.origin}: {subject}: {exc.field}: {exc.message}") from None
            except ValidationError as exc:
                raise InputError(f"{self.origin}: {subject}: {_explain(_first_error(exc))}") from None
            yield workload, subject, item

    def subject(self, item: _Item) -> str:
        """How an item is named in messages: its id when it has a usable one, else its position."""
        raw_id = item.data.get("id") if isinstance(item.data, dict) else None
        if isinstance(raw_id, (str, int, float)) and not isinstance(raw_id, bool) and str(raw_id).strip():
            name = f"workload {str(raw_id)!r}"
            return f"{name} (line {item.line})" if self.fmt == "csv" else name
        if self.fmt == "csv":
            return f"line {item.line}"
        line = self._yaml_line(item.index)
        return f"item {item.index}" + (f" (line {line})" if line else "")

    def _yaml_line(self, index: int) -> int | None:
        if self._yaml_lines is None:
            self._yaml_lines = _yaml_item_lines(self.text)
        return self._yaml_lines[index - 1] if 0 < index <= len(self._yaml_lines) else None


def _sniff(text: str) -> Format:
    """Guess the format of a file without a telling suffix from its first meaningful line."""
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith(("-", "{", "[", "%")):
            return "yaml"
        head, colon, _ = s.partition(":")
        if colon and "," not in head:
            return "yaml"
        return "csv" if "," in s else "yaml"
    return "yaml"


# ---- YAML ------------------------------------------------------------------------------------


@functools.cache
def _yaml_loader() -> type:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        """The safe loader, refusing duplicate keys (a repeated `checkpoint:` would silently win) and
        leaving timestamps as text, so a bad deadline is reported by the model against its field."""

        yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in base.yaml_implicit_resolvers.items()
        }

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[str] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                        )
                    seen.add(key_node.value)
            return super().construct_mapping(node, deep=deep)

    return Loader


def _yaml_load(text: str, origin: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader: never builds arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = exc.problem or exc.context or "syntax error"
        raise InputError(f"{origin}: {where}invalid YAML: {_one_line(what)}") from None
    except RecursionError:
        raise InputError(f"{origin}: invalid YAML: nested too deeply") from None
    except Exception as exc:  # a bad timestamp, a bad !!binary, ...: never a traceback
        raise InputError(f"{origin}: invalid YAML: {_one_line(str(exc)) or type(exc).__name__}") from None


def _yaml_items(source: _Source) -> list[_Item]:
    doc = _yaml_load(source.text, source.origin)
    origin = source.origin
    if isinstance(doc, dict):
        unknown = [k for k in doc if k != "workloads"]
        if unknown:
            if "id" in doc or "kind" in doc:
                raise InputError(
                    f"{origin}: expected a 'workloads:' list at the top, found a single workload's fields "
                    "(put it under 'workloads:' as '- id: ...')"
                )
            raise InputError(
                f"{origin}: unknown top-level key {str(unknown[0])!r}"
                f"{_did_you_mean(unknown[0], ['workloads'])} (expected only 'workloads:')"
            )
        doc = doc.get("workloads")
        if doc is not None and not isinstance(doc, list):
            raise InputError(f"{origin}: workloads: expected a list of workloads, got {_show(doc)}")
    elif doc is not None and not isinstance(doc, list):
        raise InputError(
            f"{origin}: expected a mapping with a 'workloads:' list (or a list of workloads), got {_show(doc)}"
        )
    if not doc:
        raise InputError(f"{origin}: no workloads (expected a 'workloads:' list with at least one item)")
    items = [_Item(data, i, None) for i, data in enumerate(doc, start=1)]
    for item in items:
        if not isinstance(item.data, dict):
            raise InputError(
                f"{origin}: {source.subject(item)}: expected a mapping of workload fields, got {_show(item.data)}"
            )
    return items


def _yaml_item_lines(text: str) -> list[int]:
    """Line numbers (1-based) of the workload items; only needed to point at an item without an id."""
    import yaml

    try:
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception:
        return []
    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if getattr(k, "value", None) == "workloads"), None)
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [child.start_mark.line + 1 for child in node.value]


# ---- CSV -------------------------------------------------------------------------------------


def _column_key(header: str) -> str:
    # "checkpoint.interval_minutes", "Remaining Hours" and "remaining-hours" all mean the same column.
    return re.sub(r"[.\s-]+", "_", header.strip().lower())


def _csv_items(source: _Source) -> list[_Item]:
    origin = source.origin
    reader = csv.reader(io.StringIO(source.text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        last = 0
        for row in reader:
            rows.append((last + 1, row))
            last = reader.line_num
    except csv.Error as exc:
        raise InputError(f"{origin}: line {reader.line_num}: invalid CSV: {_one_line(str(exc))}") from None
    rows = [(line, row) for line, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(f"{origin}: no workloads (the file is empty; expected a CSV header and rows)")
    header_line, header = rows[0]
    columns = _csv_header(header, f"{origin}: line {header_line}")
    if len(rows) == 1:
        raise InputError(f"{origin}: no workloads (the CSV has a header but no rows)")
    items = []
    for index, (line, row) in enumerate(rows[1:], start=1):
        if len(row) > len(columns) and any(cell.strip() for cell in row[len(columns) :]):
            raise InputError(f"{origin}: line {line}: {len(row)} values but the header has {len(columns)} columns")
        data: dict[str, str] = {}
        for column, cell in zip(columns, row):
            value = cell.strip()
            if not value:
                continue  # an empty cell means the field is absent
            if column is None:
                raise InputError(f"{origin}: line {line}: a value {_show(value)} in a column with no header")
            data[column] = value
        items.append(_Item(data, index, line))
    return items


def _csv_header(header: list[str], where: str) -> list[str | None]:
    columns: list[str | None] = []
    for cell in header:
        if not cell.strip():
            columns.append(None)  # tolerated as long as its cells stay empty (spreadsheet trailing commas)
            continue
        key = _column_key(cell)
        label = _label_column(cell)
        if label is not None:
            key = _LABEL_PREFIX + label
        elif key not in CSV_COLUMNS:
            hint = _did_you_mean(key, list(CSV_COLUMNS))
            if not hint and len(header) == 1 and (";" in cell or "\t" in cell):
                hint = " (the header looks ';'- or tab-separated; expected commas)"
            raise InputError(f"{where}: unknown column {_show(cell.strip())}{hint}")
        if key in columns:
            raise InputError(f"{where}: column {cell.strip()!r} appears twice")
        columns.append(key)
    for name in _REQUIRED:
        if name not in columns:
            raise InputError(f"{where}: missing column {name!r} (required columns: {', '.join(_REQUIRED)})")
    return columns


#: `labels: {team: research}` flattened like the other fields is a `labels_team` column (also
#: `labels.team`); its cells are the values, the header text after the prefix is the key as written.
_LABEL_PREFIX = "labels:"
_LABEL_HEADER = re.compile(r"\s*labels[._\s-](.+)", re.IGNORECASE)


def _label_column(header: str) -> str | None:
    m = _LABEL_HEADER.fullmatch(header)
    return (m.group(1).strip() or None) if m else None


def _csv_nested(flat: dict[str, str]) -> dict[str, Any]:
    """Turn one row's {column: cell} into the nested mapping of §4.1, splitting list and label cells."""
    nested: dict[str, Any] = {}
    for column, cell in flat.items():
        if column.startswith(_LABEL_PREFIX):
            nested.setdefault("labels", {})[column[len(_LABEL_PREFIX):]] = cell
            continue
        path = CSV_COLUMNS[column]
        value: Any = cell
        if column in _LIST_COLUMNS:
            value = [v for v in re.split(r"[;|,\s]+", cell) if v]
        elif column in _MAP_COLUMNS:
            value = _labels(cell, ".".join(path))
        target = nested
        for part in path[:-1]:
            target = target.setdefault(part, {})
        if column in _MAP_COLUMNS:  # `labels` and `labels_team` columns add up
            target.setdefault(path[-1], {}).update(value)
        else:
            target[path[-1]] = value
    return nested


def _labels(cell: str, field: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in re.split(r"[;|,]", cell):
        if not pair.strip():
            continue
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise _FieldError(field, f"expected key=value pairs separated by ';', got {_show(pair.strip())}")
        labels[key.strip()] = value.strip()
    return labels


# ---- explaining pydantic's verdict in one line -----------------------------------------------


def _first_error(exc: ValidationError) -> Mapping[str, Any]:
    errors = exc.errors()
    # A misspelt field ("remaning_hours") also makes the real one missing; the typo is the news.
    return next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])


def _explain(err: Mapping[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "missing_when_enabled":
        loc = (*loc, str(ctx.get("field", "")))
        return f"{_dotted(loc)}: required when checkpoint.enabled is true (expected {_expected(loc)})"
    field = _dotted(loc) or "workload"
    if kind == "missing":
        return f"{field}: required field is missing (expected {_expected(loc)})"
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        return f"{field}: unknown field{_did_you_mean(name, _sibling_fields(loc))}"
    got = _show(err.get("input"))
    expected = _expected(loc)
    if expected is None:
        return f"{field}: {_one_line(str(err.get('msg', 'invalid value')))}, got {got}"
    hint = ""
    if kind == "literal_error" and isinstance(err.get("input"), str):
        hint = _did_you_mean(err["input"], _literal_values(loc))
    return f"{field}: expected {expected}, got {got}{hint}"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # A key like "a\nb" from a hostile file must not break the one-line message.
            name = str(part) if re.fullmatch(r"[\w-]+", str(part)) else repr(str(part))
            out += ("." if out else "") + name
    return out


def _resolve(loc: tuple[Any, ...]) -> tuple[Any, Any] | None:
    """(annotation, FieldInfo or None) of the thing at `loc`, or None when loc leaves the models."""
    ann: Any = Workload
    info: Any = None
    for part in loc:
        origin = typing.get_origin(ann)
        if _is_model(ann) and isinstance(part, str) and part in ann.model_fields:
            info = ann.model_fields[part]
            ann = _unwrap_optional(info.annotation)
        elif origin is list and isinstance(part, int):
            ann, info = _unwrap_optional(typing.get_args(ann)[0]), None
        elif origin is dict:
            ann, info = _unwrap_optional(typing.get_args(ann)[1]), None
        else:
            return None
    return ann, info


def _sibling_fields(loc: tuple[Any, ...]) -> list[str]:
    parent = _resolve(loc[:-1])
    if parent is None or not _is_model(parent[0]):
        return []
    return list(parent[0].model_fields)


def _literal_values(loc: tuple[Any, ...]) -> list[str]:
    resolved = _resolve(loc)
    if resolved is None or typing.get_origin(resolved[0]) is not Literal:
        return []
    return [str(v) for v in typing.get_args(resolved[0])]


def _expected(loc: tuple[Any, ...]) -> str | None:
    resolved = _resolve(loc)
    if resolved is None:
        return None
    ann, info = resolved
    limits: list[str] = []
    min_length = 0
    for meta in getattr(info, "metadata", ()):
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                limits.append(f"{op} {getattr(meta, attr):g}")
        min_length = max(min_length, getattr(meta, "min_length", 0) or 0)
    bounds = (" " + " and ".join(limits)) if limits else ""
    if typing.get_origin(ann) is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(ann))
    if ann is bool:
        return "true or false"
    if ann is int:
        return "a whole number" + bounds
    if ann is float:
        return "a number" + bounds
    if ann is str:
        return "non-empty text" if min_length else "text"
    if ann is datetime:
        return "an ISO-8601 date or time such as 2026-12-01T00:00:00Z"
    if typing.get_origin(ann) is list:
        return "a list of text values (in CSV: separated by ';')"
    if typing.get_origin(ann) is dict:
        return "a mapping of text values (in CSV: key=value;key=value)"
    if _is_model(ann):
        return "a mapping with the fields " + ", ".join(ann.model_fields)
    return None


def _show(value: Any) -> str:
    """A short, one-line rendering of the offending value."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return repr(text)
    if isinstance(value, (int, float)):
        return repr(value)
    return f"a {type(value).__name__}"


def _did_you_mean(word: Any, candidates: Sequence[str]) -> str:
    if not isinstance(word, str) or not candidates:
        return ""
    match = difflib.get_close_matches(word.lower(), [c.lower() for c in candidates], n=1, cutoff=0.6)
    if not match:
        return ""
    original = next(c for c in candidates if c.lower() == match[0])
    return f" (did you mean {original!r}?)"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---- instance types the price table knows ----------------------------------------------------


class _TypeChecker:
    def __init__(self, known: Mapping[str, Collection[str]]) -> None:
        self._known = known
        self._sets: dict[str, frozenset[str]] = {}

    def problem(self, workload: Workload) -> str | None:
        provider = workload.provider
        if provider not in self._known:
            return None
        if provider not in self._sets:
            self._sets[provider] = frozenset(str(t) for t in self._known[provider])
        types_ = self._sets[provider]
        if not types_ or workload.instance_type in types_:
            return None
        hint = _did_you_mean(workload.instance_type, sorted(types_)) or " (not in the price table)"
        return f"unknown instance type {workload.instance_type!r} for {provider}{hint}"
