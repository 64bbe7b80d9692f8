"""Class schemes: which classes a dataset's label files hold, their names and colours.

A :class:`ClassScheme` says, for each training class ``i`` (0..K-1), its ``names[i]``,
``colors[i]`` and the ``values[i]`` that stands for it in the label files (the ``dfc`` layer);
every other value is :data:`~data.labels.IGNORE_INDEX` (255). The default is :data:`DFC8`, the
8 DFC2020 classes of the paper (values 1, 2, 4, 5, 6, 7, 9, 10; savanna, snow/ice and 0
ignored), so SEN12MS / DFC2020 behave exactly as before. A dataset root may carry its own
scheme as ``classes.json`` (:data:`CLASSES_FILE`), which ``prepare_dataset.py`` writes::

    {"scheme": "my-region", "ignore_index": 255,
     "classes": [{"name": "Water", "color": "#1c0dff", "value": 1}, ...]}

:class:`LabelMapping` turns the codes of a *source* label map (ESA WorldCover, a national
map, field polygons) into class values; presets :data:`WORLDCOVER` and :data:`DFC10`, or a
small JSON / CSV file (:func:`read_label_mapping`).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DatasetError
from .labels import DFC_CLASSES, DFC_COLORS, IGNORE_INDEX

__all__ = ["ClassScheme", "DFC8", "CLASSES_FILE", "scheme_of_root", "scheme_origin", "LabelMapping", "WORLDCOVER",
           "WORLDCOVER_CLASSES", "DFC10", "PRESETS", "read_label_mapping", "label_mapping"]

CLASSES_FILE = "classes.json"
"""Name of the class-scheme file in a dataset root."""

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_MAX_CLASSES = 254  # 255 is the ignore index, uint8 label maps


@dataclass(frozen=True)
class ClassScheme:
    """Names, colours and label-file values of the K training classes (index = position)."""

    names: Tuple[str, ...]
    colors: Tuple[str, ...]
    values: Tuple[int, ...]
    scheme: str = "custom"

    def __post_init__(self) -> None:
        k = len(self.names)
        if not 1 <= k <= _MAX_CLASSES:
            raise ValueError(f"a class scheme needs 1..{_MAX_CLASSES} classes, got {k}")
        if len(self.colors) != k or len(self.values) != k:
            raise ValueError(f"{k} class names but {len(self.colors)} colours and {len(self.values)} values")
        if len(set(self.names)) != k:
            raise ValueError(f"class names must be unique: {list(self.names)}")
        if len(set(self.values)) != k:
            raise ValueError(f"label-file values must be unique: {list(self.values)}")
        for v in self.values:
            if not 0 <= int(v) <= 65535 or int(v) == IGNORE_INDEX:
                raise ValueError(f"label-file value {v} must lie in 0..65535 and not be {IGNORE_INDEX}")
        for c in self.colors:
            if not _HEX.match(c):
                raise ValueError(f"class colour {c!r} is not #rrggbb")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def table_u16(self) -> np.ndarray:
        """65536-entry uint8 table: label-file value -> class index (or 255)."""
        table = np.full(1 << 16, IGNORE_INDEX, dtype=np.uint8)
        table[np.asarray(self.values, dtype=np.int64)] = np.arange(self.num_classes, dtype=np.uint8)
        return table

    def to_indices(self, array: np.ndarray) -> np.ndarray:
        """Label-file values (any integer or float dtype) -> uint8 class indices, 255 elsewhere."""
        a = np.asarray(array)
        if a.dtype.kind == "f":
            a = np.nan_to_num(a, nan=-1.0)
        a = a.astype(np.int64, copy=False)
        out = np.full(a.shape, IGNORE_INDEX, dtype=np.uint8)
        inside = (a >= 0) & (a <= 65535)
        out[inside] = self.table_u16()[a[inside]]
        return out

    def to_json(self) -> dict:
        return {"scheme": self.scheme, "ignore_index": IGNORE_INDEX,
                "classes": [{"name": n, "color": c, "value": int(v)}
                            for n, c, v in zip(self.names, self.colors, self.values)]}

    @classmethod
    def from_json(cls, obj: Mapping, source: str = "<dict>") -> "ClassScheme":
        """Parse :meth:`to_json` output (e.g. a checkpoint's ``classes`` entry); errors name ``source``."""
        try:
            classes = obj["classes"]
            names = tuple(str(c["name"]) for c in classes)
            values = tuple(int(c.get("value", i + 1)) for i, c in enumerate(classes))
            colors = tuple(str(c["color"]) if c.get("color") else _palette(len(classes))[i]
                           for i, c in enumerate(classes))
            return cls(names, colors, values, str(obj.get("scheme", "custom")))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{source}: not a class scheme ({err}); expected "
                               '{"classes": [{"name": ..., "color": "#rrggbb", "value": N}, ...]}') from None

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ClassScheme":
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetError(f"{path}: cannot read the class scheme ({err})") from None
        return cls.from_json(obj, str(path))

    @property
    def is_dfc8(self) -> bool:
        return self.same_classes(DFC8)

    def same_classes(self, other: "ClassScheme") -> bool:
        """Same class names and label-file values, in the same order (colours and name aside)."""
        return (self.names, self.values) == (other.names, other.values)

    def describe(self) -> str:
        """``3 classes (Water, Crop, Forest)``: one line for messages and logs."""
        shown = ", ".join(self.names[:10]) + (", ..." if self.num_classes > 10 else "")
        return f"{self.num_classes} class{'es' if self.num_classes != 1 else ''} ({shown})"

    def output_names(self, num_outputs: int) -> List[str]:
        """Names of a model's ``num_outputs`` classes: the scheme's, then ``class_K`` ... for
        outputs beyond them (``--n_classes`` larger than the scheme); cut to ``num_outputs``."""
        extra = [f"class_{i}" for i in range(self.num_classes, num_outputs)]
        return (list(self.names) + extra)[:num_outputs]

    def output_colors(self, num_outputs: int) -> List[str]:
        """Colours matching :meth:`output_names` (a tab10 / tab20 palette for the extra outputs)."""
        extra = _palette(num_outputs)[self.num_classes:] if num_outputs > self.num_classes else []
        return (list(self.colors) + extra)[:num_outputs]


DFC8 = ClassScheme(DFC_CLASSES, DFC_COLORS, (1, 2, 4, 5, 6, 7, 9, 10), "dfc")
"""The paper's 8 classes in DFC2020 label files (classes 1-10; savanna 3, snow/ice 8 and 0 ignored)."""


def scheme_of_root(root: Union[str, Path]) -> ClassScheme:
    """The scheme of a dataset root: its ``classes.json`` if present, else :data:`DFC8`."""
    path = Path(root) / CLASSES_FILE
    return ClassScheme.load(path) if path.is_file() else DFC8


def scheme_origin(root: Union[str, Path]) -> str:
    """Where :func:`scheme_of_root` takes a root's scheme from, for messages."""
    path = Path(root) / CLASSES_FILE
    return str(path) if path.is_file() else f"{root} (no {CLASSES_FILE}: the 8 DFC2020 classes)"


def _palette(k: int) -> List[str]:
    """``k`` distinct colours (tab10 / tab20), for classes given without one."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(k)]


# --------------------------------------------------------------------------- source maps
@dataclass(frozen=True)
class LabelMapping:
    """Source label codes -> class values of a :class:`ClassScheme`.

    ``codes[c]`` is the label-file value written for source code ``c``; ``ignore`` the source
    codes written as 0 (no label: ignored in training and in the metrics). Any other code is an
    error (:meth:`apply` names it), so a typo in a class file cannot silently drop a class.
    """

    scheme: ClassScheme
    codes: Mapping[int, int]
    ignore: Tuple[int, ...] = ()
    source: str = "preset"
    notes: Mapping[int, str] = field(default_factory=dict)

    def table(self) -> Tuple[np.ndarray, np.ndarray]:
        """(values, known): 65536-entry lookups for uint16 codes (known = mapped or ignored)."""
        values = np.zeros(1 << 16, dtype=np.uint16)
        known = np.zeros(1 << 16, dtype=bool)
        for code, value in self.codes.items():
            values[code] = value
            known[code] = True
        known[list(self.ignore)] = True
        return values, known

    def apply(self, codes: np.ndarray, what: str = "--labels") -> np.ndarray:
        """uint16 label-file values of a source code array; DatasetError naming unknown codes."""
        a = np.asarray(codes)
        if a.dtype.kind == "f":
            if not np.all(np.isnan(a) | (a == np.round(a))):
                raise DatasetError(f"{what}: label values are not whole numbers (a continuous raster, "
                                   "not a class map?)")
            a = np.nan_to_num(a, nan=float(self.ignore[0]) if self.ignore else 0.0)
        a = a.astype(np.int64, copy=False)
        bad = (a < 0) | (a > 65535)
        if bad.any():
            raise DatasetError(f"{what}: label codes outside 0..65535 (e.g. {int(a[bad][0])})")
        values, known = self.table()
        unknown = ~known[a]
        if unknown.any():
            found = np.unique(a[unknown])
            listed = ", ".join(str(int(v)) for v in found[:10]) + (" ..." if len(found) > 10 else "")
            raise DatasetError(f"{what}: label code(s) {listed} are not in the class mapping ({self.source}); "
                               "add them to the class file (or to its ignored codes)")
        return values[a]

    def describe(self) -> List[Dict[str, object]]:
        """One row per source code: code, class name or 'ignored' (for dataset.json and docs)."""
        by_value = dict(zip(self.scheme.values, self.scheme.names))
        rows = [{"code": c, "class": by_value.get(v, "ignored"), **({"note": self.notes[c]} if c in self.notes else {})}
                for c, v in sorted(self.codes.items())]
        rows += [{"code": c, "class": "ignored (no label)"} for c in sorted(self.ignore)]
        return rows


WORLDCOVER_CLASSES: Dict[int, str] = {
    10: "Tree cover", 20: "Shrubland", 30: "Grassland", 40: "Cropland", 50: "Built-up",
    60: "Bare / sparse vegetation", 70: "Snow and ice", 80: "Permanent water bodies",
    90: "Herbaceous wetland", 95: "Mangroves", 100: "Moss and lichen",
}
"""ESA WorldCover (10 m, v100/v200) class codes; 0 = no data."""

# WorldCover code -> DFC2020 class (1-10); DFC8 then keeps 8 of them (snow and ice -> ignored)
_WORLDCOVER_TO_DFC = {10: 1, 20: 2, 30: 4, 40: 6, 50: 7, 60: 9, 70: 8, 80: 10, 90: 5, 95: 5, 100: 4}
_WORLDCOVER_NOTES = {
    70: "DFC class 8 Snow/Ice, which the 8-class setting ignores (255)",
    95: "mangroves are flooded woody vegetation: Wetlands (DFC2020's wetland class)",
    100: "moss and lichen is low herbaceous cover: Grassland (it is vegetated, so not Barren)",
}

WORLDCOVER = LabelMapping(DFC8, _WORLDCOVER_TO_DFC, ignore=(0,), source="preset worldcover",
                          notes=_WORLDCOVER_NOTES)
"""ESA WorldCover codes onto the 8 DFC classes (the label files then hold DFC codes 1-10)."""

DFC10 = LabelMapping(DFC8, {c: c for c in range(1, 11)}, ignore=(0,), source="preset dfc")
"""Label maps already in DFC2020 classes 1-10 (0 = no data); savanna and snow/ice are ignored
by the 8-class setting, as in DFC2020."""

PRESETS: Dict[str, LabelMapping] = {"worldcover": WORLDCOVER, "dfc": DFC10}

_IGNORE_NAMES = {"", "ignore", "ignored", "no data", "nodata", "none", "-"}


def _mapping_from_rows(rows: Sequence[Tuple[int, str, Optional[str]]], source: str, scheme_name: str) -> LabelMapping:
    names: List[str] = []
    colors: Dict[str, str] = {}
    codes: Dict[int, int] = {}
    ignore: List[int] = []
    seen: Dict[int, str] = {}
    for code, name, color in rows:
        if code in seen:
            raise DatasetError(f"{source}: code {code} is given twice ({seen[code]!r} and {name!r})")
        seen[code] = name
        if name.strip().lower() in _IGNORE_NAMES:
            ignore.append(code)
            continue
        if name not in names:
            names.append(name)
        if color:
            if not _HEX.match(color):
                raise DatasetError(f"{source}: colour {color!r} of class {name!r} is not #rrggbb")
            colors.setdefault(name, color)
        codes[code] = names.index(name) + 1
    if not names:
        raise DatasetError(f"{source}: no class defined (every code is ignored)")
    if len(names) > _MAX_CLASSES:
        raise DatasetError(f"{source}: {len(names)} classes; at most {_MAX_CLASSES}")
    palette = _palette(len(names))
    scheme = ClassScheme(tuple(names), tuple(colors.get(n, palette[i]) for i, n in enumerate(names)),
                         tuple(range(1, len(names) + 1)), scheme_name)
    return LabelMapping(scheme, codes, tuple(sorted(ignore)), source=source)


def _code(value, source: str, where: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise DatasetError(f"{source}, {where}: code {value!r} is not a number") from None
    if number != int(number) or not 0 <= number <= 65535:
        raise DatasetError(f"{source}, {where}: code {value!r} must be a whole number in 0..65535")
    return int(number)


def read_label_mapping(path: Union[str, Path]) -> LabelMapping:
    """A class file: JSON or CSV mapping source codes to class names (and colours).

    JSON::

        {"name": "my-region",
         "classes": [{"name": "Water", "color": "#1c0dff", "codes": [80]},
                     {"name": "Forest", "codes": [10, 95]}],
         "ignore": [0]}

    CSV (header ``code,name[,color]``; a code may share its name with others; an empty name or
    ``ignore`` marks a no-data code)::

        code,name,color
        10,Forest,#009900
        80,Water,#1c0dff
        0,ignore,

    Classes are numbered in order of first appearance (label-file value = index + 1).
    """
    path = Path(path)
    source = f"--classes {path}"
    if not path.is_file():
        raise DatasetError(f"{source}: no such file (or give a preset: {', '.join(PRESETS)})")
    text = path.read_text(encoding="utf-8-sig")
    rows: List[Tuple[int, str, Optional[str]]] = []
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{source}: not valid JSON (line {err.lineno}: {err.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("classes"), list):
            raise DatasetError(f'{source}: expected {{"classes": [{{"name": ..., "codes": [...]}}, ...], '
                               '"ignore": [...]}')
        for i, entry in enumerate(obj["classes"]):
            if not isinstance(entry, dict) or "name" not in entry or "codes" not in entry:
                raise DatasetError(f"{source}, classes[{i}]: expected an object with 'name' and 'codes'")
            codes = entry["codes"] if isinstance(entry["codes"], list) else [entry["codes"]]
            for c in codes:
                rows.append((_code(c, source, f"classes[{i}]"), str(entry["name"]), entry.get("color")))
        for c in obj.get("ignore", []) or []:
            rows.append((_code(c, source, "ignore"), "ignore", None))
        name = str(obj.get("name") or path.stem)
    elif path.suffix.lower() in (".csv", ".txt"):
        reader = csv.reader(text.splitlines())
        for line_no, row in enumerate(reader, start=1):
            if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
                continue
            if line_no == 1 and row[0].strip().lower() == "code":
                continue
            if len(row) < 2:
                raise DatasetError(f"{source}, line {line_no}: expected code,name[,color], got {row!r}")
            color = row[2].strip() if len(row) > 2 and row[2].strip() else None
            rows.append((_code(row[0], source, f"line {line_no}"), row[1].strip(), color))
        name = path.stem
    else:
        raise DatasetError(f"{source}: expected a .json or .csv class file (or a preset: {', '.join(PRESETS)})")
    if not rows:
        raise DatasetError(f"{source}: no class defined")
    return _mapping_from_rows(rows, source, name)


def label_mapping(spec: str) -> LabelMapping:
    """``--classes``: a preset name (:data:`PRESETS`) or a class file (:func:`read_label_mapping`)."""
    if spec in PRESETS:
        return PRESETS[spec]
    return read_label_mapping(spec)
