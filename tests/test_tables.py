"""ResultsTable <-> DataFrame against a real ImageJ."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from conftest import run_python

pytestmark = pytest.mark.imagej


def _frame(n=5, labels=True):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "Area": rng.random(n) * 100,
        "Mean": np.where(np.arange(n) % 2 == 0, np.nan, rng.standard_normal(n)),
        "Count": np.arange(n, dtype=np.int64) * 3,
        "Flag": np.arange(n) % 2 == 0,
        "Class": [f"type {i % 3}" for i in range(n)],
        "Z last": rng.random(n),
    })
    if labels:
        df.index = pd.Index([f"cell-{i}" for i in range(n)], name="Label")
    return df


def test_round_trip_values_labels_order_nan(clean_imagej):
    from ij_bridge import dataframe_to_results, results_to_dataframe

    df = _frame()
    rt = dataframe_to_results(df)
    # ImageJ's own view
    assert rt.size() == 5
    assert [str(h) for h in rt.getHeadings()] == ["Label", "Area", "Mean", "Count", "Flag", "Class", "Z last"]
    assert rt.getValue("Area", 3) == df["Area"].iloc[3]
    assert np.isnan(rt.getValue("Mean", 0))
    assert str(rt.getStringValue("Class", 4)) == "type 1"
    assert str(rt.getLabel(2)) == "cell-2"
    assert rt.getValue("Flag", 0) == 1.0
    back = results_to_dataframe()          # the system Results table
    expected = df.astype({"Flag": float})  # ints come back as ints (ij-bridge wrote them)
    pd.testing.assert_frame_equal(back, expected)
    assert back.attrs["units"] == {}


def test_imagej_measurements_to_dataframe(clean_imagej):
    """A table ImageJ fills itself (Analyze > Measure) converts with the right numbers."""
    from ij_bridge import results_to_dataframe, to_imageplus

    ij = clean_imagej
    img = np.zeros((20, 30), np.uint8)
    img[5:10, 4:14] = 200
    imp = to_imageplus(img, title="m")
    imp.show()
    ij.run(imp, "Set Measurements...", "area mean min display redirect=None decimal=3")
    ij.makeRectangle(4, 5, 10, 5)
    ij.run(imp, "Measure", "")
    ij.makeRectangle(0, 0, 30, 20)
    ij.run(imp, "Measure", "")
    df = results_to_dataframe("Results")
    assert list(df.columns[:4]) == ["Label", "Area", "Mean", "Min"] or \
        list(df.columns[:3]) == ["Area", "Mean", "Min"]
    assert df["Area"].tolist() == [50.0, 600.0]
    assert df["Mean"].tolist() == [200.0, pytest.approx(200 * 50 / 600)]


def test_named_table_and_string_only_columns(clean_imagej):
    import jpype

    from ij_bridge import dataframe_to_results, results_to_dataframe

    df = pd.DataFrame({"name": ["a", None, "c"], "note": ["", "x", None]})
    rt = dataframe_to_results(df, title="Notes")
    assert rt.size() == 3
    back = results_to_dataframe("Notes")
    assert list(back.columns) == ["name", "note"]
    # a missing string is an empty cell in ImageJ, and comes back as ""
    assert back["name"].tolist() == ["a", "", "c"]
    assert back["note"].tolist() == ["", "x", ""]
    assert isinstance(back.index, pd.RangeIndex)
    # the system table was not touched
    assert jpype.JClass("ij.measure.ResultsTable").getResultsTable().size() == 0
    win = jpype.JClass("ij.WindowManager").getWindow("Notes")
    assert win is not None
    win.close(False)
    with pytest.raises(ValueError, match="no table titled 'Nope'"):
        results_to_dataframe("Nope")


def test_mixed_column_and_empty_table(clean_imagej):
    from ij_bridge import dataframe_to_results, results_to_dataframe

    df = pd.DataFrame({"v": [1.5, "n/a", 3.0, None]}, dtype=object)
    dataframe_to_results(df, show=False)
    back = results_to_dataframe()
    assert back["v"].tolist()[:3] == [1.5, "n/a", 3.0] and np.isnan(back["v"].tolist()[3])
    empty = pd.DataFrame({"A": pd.Series([], dtype=float), "B": pd.Series([], dtype=float)})
    rt = dataframe_to_results(empty, show=False)
    assert rt.size() == 0
    back = results_to_dataframe(rt)
    assert back.shape == (0, 2) and list(back.columns) == ["A", "B"]


@pytest.mark.parametrize("bad, err, match", [
    ({"a": [1, 2, 3], "b": [1, 2]}, ValueError, "different lengths"),
    (pd.DataFrame([[1, 2]], columns=["a", "a"]), ValueError, "duplicate"),
    (pd.DataFrame({"": [1]}), ValueError, "empty"),
    (pd.DataFrame({"t": pd.to_datetime(["2024-01-01"])}), TypeError, "datetime"),
    (pd.DataFrame({"o": [object()]}), TypeError, "numbers and strings"),
    (pd.DataFrame({"Label": ["x"]}, index=["r1"]), ValueError, "both row labels"),
    (pd.DataFrame({"s": ["a\tb"]}), ValueError, "tab"),
    ([[1, 2], [3]], TypeError, "DataFrame"),
])
def test_bad_tables_rejected_and_nothing_written(clean_imagej, bad, err, match):
    import jpype

    from ij_bridge import dataframe_to_results

    rt = jpype.JClass("ij.measure.ResultsTable").getResultsTable()
    rt.incrementCounter()
    rt.addValue("keep", 42.0)
    with pytest.raises(err, match=match):
        dataframe_to_results(bad)
    assert rt.size() == 1 and rt.getValue("keep", 0) == 42.0


def test_large_numeric_table_is_bulk(clean_imagej):
    import time

    from ij_bridge import dataframe_to_results, results_to_dataframe

    n = 200_000
    df = pd.DataFrame({f"c{i}": np.arange(n, dtype=float) * (i + 1) for i in range(5)})
    t0 = time.perf_counter()
    dataframe_to_results(df, show=False)
    back = results_to_dataframe()
    elapsed = time.perf_counter() - t0
    pd.testing.assert_frame_equal(back, df)
    print(f"200k x 5 numeric table both ways: {elapsed:.2f} s")


def test_headless_tables():
    code = textwrap.dedent("""
        import pandas as pd, ij_bridge
        ij_bridge.start(mode="headless")
        df = pd.DataFrame({"A": [1.0, 2.0], "B": ["x", "y"]}, index=pd.Index(["r1", "r2"], name="Label"))
        ij_bridge.dataframe_to_results(df)
        back = ij_bridge.results_to_dataframe()
        pd.testing.assert_frame_equal(back, df)
        print("OK")
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_many_labels_and_strings(clean_imagej):
    import time

    from ij_bridge import dataframe_to_results, results_to_dataframe

    n = 20_000
    df = pd.DataFrame({"v": np.arange(n, dtype=float), "s": [f"s{i}" for i in range(n)]},
                      index=pd.Index([f"r{i}" for i in range(n)], name="Label"))
    t0 = time.perf_counter()
    dataframe_to_results(df, show=False)
    back = results_to_dataframe()
    print(f"20k rows with labels and a text column both ways: {time.perf_counter() - t0:.2f} s")
    pd.testing.assert_frame_equal(back, df)
