"""anisotropy.io: the one JSONL reader (torn-line rule), the strict-JSON policy, atomic writers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from anisotropy.io import (
    append_jsonl,
    nonfinite_to_null,
    read_jsonl,
    save_figure_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_jsonl_atomic,
)


def test_torn_last_line_is_ignored_and_other_bad_lines_raise(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, {"epoch": 1})
    append_jsonl(p, {"epoch": 2})
    with open(p, "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 3, "lo')  # a crash while appending: no newline
    assert read_jsonl(p) == [{"epoch": 1}, {"epoch": 2}]
    p.write_text('{"epoch": 1}\n{not json\n')  # terminated, hence not torn: an error
    with pytest.raises(ValueError, match="log.jsonl:2: not valid JSON"):
        read_jsonl(p)
    p.write_text('{"epoch": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="log.jsonl:2: .* must be an object"):
        read_jsonl(p)


def test_writers_refuse_non_finite_numbers(tmp_path):
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=r"x\.json\.a\[1\] is"):
            write_json_atomic(tmp_path / "x.json", {"a": [0.0, bad]})
        with pytest.raises(ValueError, match="finite"):
            append_jsonl(tmp_path / "l.jsonl", {"v": bad})
        with pytest.raises(ValueError, match="finite"):
            write_jsonl_atomic(tmp_path / "w.jsonl", [{"v": 1.0}, {"v": bad}])
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "w.jsonl").exists()


def test_nonfinite_to_null_makes_strict_json(tmp_path):
    obj = {
        "a": (1.0, np.float64("nan")),
        2: np.array([np.inf, 3.0]),
        "b": np.bool_(True),
        "n": np.int64(4),
        "s": "nan",
    }
    clean = nonfinite_to_null(obj)
    assert clean == {"a": [1.0, None], "2": [None, 3.0], "b": True, "n": 4, "s": "nan"}
    path = write_json_atomic(tmp_path / "r.json", clean)
    assert json.loads(path.read_text()) == clean


def test_csv_and_figure_writers_leave_no_temporary_files(tmp_path):
    write_csv_atomic(tmp_path / "t.csv", [{"a": 1, "b": "x"}, {"a": 2}], ["a", "b"])
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,x\n2,\n"
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    png = save_figure_atomic(fig, tmp_path / "f.png", dpi=50)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert save_figure_atomic(fig, tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png", "t.csv"]
    with pytest.raises(ValueError, match="no suffix"):
        save_figure_atomic(fig, tmp_path / "noext")
