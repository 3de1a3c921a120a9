"""The results file of batch runs: whole inputs kept on resume, parts merged in input order, each input once."""

from __future__ import annotations

import json

import pytest

from mmstudio.errors import StorageError
from mmstudio.results_file import ResultsFile, merge, read_groups


def text(*records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_groups_stop_at_a_cut_line_and_at_a_record_without_its_key():
    data = text({"line": 1, "a": 1}, {"line": 1, "a": 2}, {"line": 2}) + b'{"line": 3, "a"'
    groups, kept = read_groups(data, "line")
    assert [value for value, _ in groups] == [1, 2] and kept == len(data) - len(b'{"line": 3, "a"')
    assert read_groups(text({"line": True}), "line") == ([], 0)  # a bool is no input's name


def test_a_grouped_file_drops_its_last_input_on_resume_and_keeps_errors_in_mind(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(text({"line": 1}, {"line": 2, "error": "x"}, {"line": 3}, {"line": 3}))
    results = ResultsFile(path, resume=True, key="line", grouped=True)
    assert results.done == {1, 2} and results.failed_before
    results.close()
    assert path.read_bytes() == text({"line": 1}, {"line": 2, "error": "x"})
    with pytest.raises(StorageError, match="--resume"):
        ResultsFile(path)


def test_merge_orders_by_input_keeps_the_first_copy_and_appends_inputs_no_longer_listed(tmp_path):
    path = tmp_path / "out.jsonl"
    a = text({"image": "b", "n": 1}, {"image": "d"})
    b = text({"image": "a"}, {"image": "b", "n": 2}, {"image": "gone"}) + b'{"image": "c"'
    assert merge(path, [a, b], ["a", "b", "c", "d"], "image") == 4
    assert path.read_bytes() == text({"image": "a"}, {"image": "b", "n": 1}, {"image": "d"}, {"image": "gone"})
    assert not list(tmp_path.glob(".*merging"))
