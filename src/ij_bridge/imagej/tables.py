"""ImageJ ``ResultsTable`` <-> :class:`pandas.DataFrame`.

Mapping
-------
==========================  =============================================================
ResultsTable                DataFrame
==========================  =============================================================
numeric column              float64 column (ImageJ stores every number as a double);
                            integers beyond 2**53 that a double cannot hold exactly are
                            rounded, with a :class:`LossyConversionWarning` naming the
                            column, as images warn. Integer columns come back as int64:
                            those that were int when ij-bridge wrote the table, and
                            ImageJ's whole-number headings (``Label``, ``Frame``,
                            ``Slice``, ``Ch``) when every value is a whole number.
                            bool columns come back as float64 (0.0/1.0)
string column               pandas' default string dtype (``str`` in pandas 3, object
                            before). A missing string (None/NaN) in a text column is an
                            empty cell in ImageJ and comes back as ``""``
mixed column (numbers in    object column holding floats and strings
some rows, text in others)
NaN                         NaN
row labels ("Label")        the index, as ``str``, named after the label heading
                            (``"Label"``); a table without labels gets a RangeIndex
column order                column order
units                       ``df.attrs["units"]`` (column -> unit, as images carry
                            theirs): the units of the DataFrame ij-bridge wrote into
                            the table (e.g. by *Measure Labels*), while the table keeps
                            the headings and rows it had then; else, with ``image=``,
                            the units of ImageJ's own Measure headings (``Area``:
                            unit^2, ``X``: unit, ``Angle``: degree...) from that
                            image's calibration; else ``{}``
==========================  =============================================================

Going into ImageJ, an index that is not the default ``0..n-1`` becomes the row labels
(each label as ``str``); numeric columns move as whole ``double[]`` arrays
(``ResultsTable.setValues``), string cells one call each (ImageJ has no bulk call for
them). Columns of other types (datetime, complex, nested objects) are rejected with a
message naming the column, before anything is written.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..io import LossyConversionWarning
from ._java import jc

__all__ = ["results_to_dataframe", "dataframe_to_results", "LossyConversionWarning"]

#: Integers up to this size are exact in a double.
_EXACT_INT = 2**53

#: ImageJ headings that hold whole numbers (row and stack positions).
_INTEGER_HEADINGS = ("Label", "Frame", "Slice", "Ch")

#: Units of ImageJ's own Measure headings: the power of the spatial unit, or a fixed unit.
_MEASURE_UNITS: dict[str, Any] = {
    "Area": 2, "Volume": 3, "X": 1, "Y": 1, "Z": 1, "XM": 1, "YM": 1, "ZM": 1, "Perim.": 1,
    "Surface": 2, "BX": 1, "BY": 1, "BZ": 1, "Width": 1, "Height": 1, "Depth": 1, "Major": 1,
    "Intermediate": 1, "Minor": 1, "Feret": 1, "MinFeret": 1, "EqDiameter": 1, "Length": 1,
    "Angle": "degree", "FeretAngle": "degree", "FeretX": "pixel", "FeretY": "pixel",
    "Mean": "intensity", "StdDev": "intensity", "Min": "intensity", "Max": "intensity",
    "Median": "intensity", "Mode": "intensity", "RawIntDen": "intensity",
    "Circ.": "", "AR": "", "Round": "", "Solidity": "", "Skew": "", "Kurt": "", "Sphericity": "",
    "%Area": "%",
}

#: What ij-bridge wrote into each table: identity hash -> (headings, rows, units, int columns).
_WRITTEN: dict[int, tuple[tuple[str, ...], int, dict[str, str], frozenset[str]]] = {}


def _identity(rt: Any) -> int:
    return int(jc.System.identityHashCode(rt))


def _remember(rt: Any, df: Any) -> None:
    """Record the units and integer columns of the DataFrame just written into ``rt``."""
    units = dict(getattr(df, "attrs", {}).get("units") or {}) if isinstance(df, pd.DataFrame) else {}
    ints: set[str] = set()
    if isinstance(df, pd.DataFrame):
        ints = {str(c) for c, dt in df.dtypes.items() if getattr(dt, "kind", "") in "iu"}
    headings = tuple(str(h) for h in rt.getHeadings())
    _WRITTEN[_identity(rt)] = (headings, int(rt.size()), {str(k): str(v) for k, v in units.items()},
                               frozenset(ints))


def _image_units(image: Any, headings: list[str]) -> dict[str, str]:
    """Units of ImageJ's Measure headings from an image's calibration."""
    imp = image
    if isinstance(image, str):
        imp = jc.WindowManager.getImage(image)
        if imp is None:
            raise ValueError(f"no image titled {image!r} is open")
    cal = imp.getCalibration()
    unit = str(cal.getUnit()).strip() or "pixel"
    if unit in ("pixels", "pixel"):
        unit = "pixel"
    out = {}
    for h in headings:
        u = _MEASURE_UNITS.get(h)
        if u is None:
            continue
        if isinstance(u, int):
            out[h] = unit if u == 1 else f"{unit}^{u}"
        else:
            out[h] = u
    if "IntDen" in headings:
        out["IntDen"] = f"{unit}^2·intensity"
    return out


def _warn_inexact(name: str, values: list) -> None:
    """Warn when integers change on their way into ImageJ's doubles."""
    if not values:
        return
    changes = [abs(int(float(v)) - int(v)) for v in values]
    changed = [c for c in changes if c]
    if changed:
        warnings.warn(
            f"column {name!r}: {len(changed)} integer(s) beyond 2**53 are not exactly "
            f"representable as ImageJ's doubles (largest change {max(changed)}); store them as "
            "text (df[col].astype(str)) to keep every digit", LossyConversionWarning, stacklevel=4)


def _ensure_started() -> None:
    from . import runtime

    runtime._ensure_started()


def _table_titles() -> list[str]:
    titles = jc.WindowManager.getNonImageTitles()
    return [str(t) for t in titles] if titles is not None else []


def _resolve_table(rt: Any):
    ResultsTable = jc.ResultsTable
    if rt is None or (isinstance(rt, str) and rt == "Results"):
        return ResultsTable.getResultsTable()
    if isinstance(rt, str):
        table = ResultsTable.getResultsTable(rt)
        if table is None:
            open_titles = _table_titles()
            raise ValueError(f"no table titled {rt!r} is open; open tables: {open_titles or 'none'}"
                             " (tables exist as windows only with a display: mode='virtual')")
        return table
    if isinstance(rt, ResultsTable):
        return rt
    raise TypeError(f"expected an ij.measure.ResultsTable, a table title or None, got {type(rt).__name__}")


def results_to_dataframe(rt: Any = None, *, image: Any = None) -> pd.DataFrame:
    """Copy an ImageJ ``ResultsTable`` into a DataFrame (see the module docs).

    Parameters
    ----------
    rt : ij.measure.ResultsTable or str, optional
        The table, or the title of an open table window. Default: the system "Results"
        table (the one *Analyze > Measure* fills).
    image : ij.ImagePlus or str, optional
        The image the table measured (or its title): its calibration gives
        ``df.attrs["units"]`` for ImageJ's Measure headings when the table is not one
        ij-bridge wrote.

    Returns
    -------
    pandas.DataFrame
        ``df.attrs["units"]`` maps columns to units (see the module docs).
    """
    _ensure_started()
    table = _resolve_table(rt)
    n = int(table.size())
    headings = [str(h) for h in table.getHeadings()]
    index: pd.Index | None = None
    data: dict[str, Any] = {}
    not_found = int(jc.ResultsTable.COLUMN_NOT_FOUND)
    for pos, h in enumerate(headings):
        if pos == 0 and int(table.getColumnIndex(h)) == not_found:
            # the row-label column (it is not a data column)
            if h == "Label":  # one call for all labels
                labels = list(table.getColumnAsStrings(h)) if n else []
            else:
                labels = [table.getLabel(i) for i in range(n)]
            index = pd.Index([None if lab is None else str(lab) for lab in labels], name=h or "Label")
            continue
        values = np.array(memoryview(table.getColumn(h)), dtype=np.float64) if n else np.empty(0)
        nan = np.isnan(values)
        if nan.any():
            strings = table.getColumnAsStrings(h)
            cells = {int(i): str(strings[int(i)]) for i in np.flatnonzero(nan)}
            text = {i: s for i, s in cells.items() if s != "NaN"}
            if text:
                # a string column (missing cells: None) or a mixed one (missing: NaN)
                col = values.astype(object)
                for i, s in cells.items():
                    col[i] = s if s != "NaN" else (None if nan.all() else math.nan)
                # pandas infers its default string dtype for a pure string column
                data[h] = pd.Series(list(col), dtype=None if nan.all() else object)
                continue
        data[h] = values
    df = pd.DataFrame(data, index=pd.RangeIndex(n), columns=[h for h in headings if h in data])
    if index is not None:
        df.index = index
    written = _WRITTEN.get(_identity(table))
    if written is not None and (written[0] != tuple(headings) or written[1] != n):
        written = None  # the table changed since ij-bridge wrote it
    ints = set(written[3]) if written is not None else set()
    ints |= {h for h in _INTEGER_HEADINGS if h in data}
    for h in ints:
        if h in df.columns and df[h].dtype == np.float64:
            v = df[h].to_numpy()
            if np.all(np.isfinite(v)) and np.all(v == np.round(v)) and np.all(np.abs(v) <= _EXACT_INT):
                df[h] = v.astype(np.int64)
    if written is not None:
        df.attrs["units"] = {k: v for k, v in written[2].items() if k in df.columns}
    elif image is not None:
        df.attrs["units"] = _image_units(image, list(df.columns))
    else:
        df.attrs["units"] = {}
    return df


# --------------------------------------------------------------------------- to ImageJ
def _prepare(df: Any) -> tuple[list[tuple[str, str, Any]], list[str] | None, int]:
    """Validate and convert; returns [(name, kind, values)], labels, n rows."""
    if isinstance(df, Mapping) and not isinstance(df, pd.DataFrame):
        try:
            df = pd.DataFrame(dict(df))
        except ValueError as e:
            lengths = {str(k): len(v) if hasattr(v, "__len__") else 1 for k, v in df.items()}
            raise ValueError(f"columns have different lengths {lengths}; a table needs one length "
                             f"for all columns ({e})") from None
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas.DataFrame (or a dict of equal-length columns), got "
                        f"{type(df).__name__}")
    if isinstance(df.columns, pd.MultiIndex):
        raise ValueError("MultiIndex columns cannot be shown in ImageJ; flatten them first, e.g. "
                         "df.columns = ['_'.join(map(str, c)) for c in df.columns]")
    if isinstance(df.index, pd.MultiIndex):
        raise ValueError("a MultiIndex cannot become ImageJ row labels; use df.reset_index() first")
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"duplicate column names {dup}; ImageJ tables need unique headings")
    for c in names:
        if c.strip() == "" or any(ch in c for ch in "\t\n\r"):
            raise ValueError(f"column name {c!r} is empty or contains a tab/line break, which "
                             "ImageJ tables cannot hold")
    n = len(df)
    default_index = isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
    labels = None
    if not default_index:
        labels = ["" if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v)
                  for v in df.index]
        if "Label" in names:
            raise ValueError("the DataFrame has both row labels (its index) and a 'Label' column; "
                             "ImageJ has one label column. Drop one, or rename the column")
    columns = []
    for name, (_, series) in zip(names, df.items()):
        dt = series.dtype
        if isinstance(dt, pd.CategoricalDtype):
            series = series.astype(object)
            dt = series.dtype
        if dt.kind in "biuf":
            if dt.kind in "iu":
                ints = series.dropna().to_numpy()
                big = ints[(ints > _EXACT_INT) | (ints < -_EXACT_INT)] if dt.kind == "i" else \
                    ints[ints > _EXACT_INT]
                _warn_inexact(name, big.tolist())
            columns.append((name, "num", series.to_numpy(dtype=np.float64, na_value=np.nan)))
        elif dt.kind in "OSU" or isinstance(dt, pd.StringDtype):
            cells = []
            big = []
            for i, v in enumerate(series.tolist()):
                if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                    cells.append(math.nan)
                elif isinstance(v, str):
                    if "\t" in v or "\n" in v:
                        raise ValueError(f"column {name!r}, row {i}: text with a tab or line break "
                                         "cannot be shown in an ImageJ table")
                    cells.append(v)
                elif isinstance(v, (bool, int, float, np.integer, np.floating, np.bool_)):
                    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) \
                            and abs(int(v)) > _EXACT_INT:
                        big.append(int(v))
                    cells.append(float(v))
                else:
                    raise TypeError(f"column {name!r}, row {i}: cannot put a {type(v).__name__} "
                                    "in an ImageJ table (numbers and strings only); convert it first")
            _warn_inexact(name, big)
            if all(isinstance(v, str) or (isinstance(v, float) and math.isnan(v)) for v in cells):
                cells = [v if isinstance(v, str) else "" for v in cells]  # text column: empty cells
            columns.append((name, "obj", cells))
        else:
            raise TypeError(f"column {name!r} has dtype {dt}, which ImageJ tables cannot hold; "
                            "convert it to numbers or strings first (e.g. .astype(str))")
    return columns, labels, n


def dataframe_to_results(df: Any, title: str = "Results", show: bool = True):
    """Copy a DataFrame into an ImageJ ``ResultsTable`` (see the module docs).

    Parameters
    ----------
    df : pandas.DataFrame or dict of equal-length columns
    title : str
        ``"Results"`` (default) replaces the contents of ImageJ's system Results table,
        the one macros read with ``getResult``; any other title makes a new table.
    show : bool
        Show the table in a window (ignored headless, where tables have no window).
        ``df.attrs["units"]`` and the integer columns are remembered for
        :func:`results_to_dataframe`.

    Returns
    -------
    ij.measure.ResultsTable
        The table (for a shown table other than "Results", the one its window holds).

    Raises
    ------
    ValueError, TypeError
        Ragged columns, duplicate or empty names, unsupported dtypes; nothing is written.
    """
    columns, labels, n = _prepare(df)  # all validation before ImageJ is touched
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    _ensure_started()
    import jpype

    ResultsTable = jc.ResultsTable
    if title == "Results":
        rt = ResultsTable.getResultsTable()
        rt.reset()
    else:
        rt = ResultsTable()
    if n == 0:
        for name, _, _ in columns:
            rt.getFreeColumn(name)
    else:
        if not columns:
            for _ in range(n):
                rt.incrementCounter()
        for name, kind, values in columns:
            if kind == "num":
                rt.setValues(name, jpype.JArray(jpype.JDouble)(np.ascontiguousarray(values)))
            else:
                for i, v in enumerate(values):
                    if isinstance(v, str):
                        rt.setValue(name, i, v)
                    else:
                        rt.setValue(name, i, jpype.JDouble(v))
        if labels is not None:
            for i, lab in enumerate(labels):
                rt.setLabel(lab, i)
    headless = bool(jc.GraphicsEnvironment.isHeadless())
    if show and not headless:
        rt.show(title)
        if title != "Results":
            shown = ResultsTable.getResultsTable(title)
            if shown is not None:
                rt = shown
    _remember(rt, df)
    return rt
