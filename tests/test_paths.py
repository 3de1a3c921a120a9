"""The cache and data folders: each follows its XDG variable, and everything mmstudio writes for itself uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmstudio.jobs import default_store_path
from mmstudio.paths import cache_dir, data_dir
from mmstudio.search import index_root


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return tmp_path / "home"


def test_defaults_are_under_home(home):
    assert cache_dir() == home / ".cache" / "mmstudio"
    assert data_dir() == home / ".local" / "share" / "mmstudio"


def test_each_folder_follows_its_own_variable(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache" / "mmstudio"
    assert data_dir() == home / ".local" / "share" / "mmstudio"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert data_dir() == tmp_path / "data" / "mmstudio"
    assert cache_dir() == tmp_path / "cache" / "mmstudio"


@pytest.mark.parametrize("value", ["", "relative/cache"])
def test_an_empty_or_relative_variable_counts_as_unset(home, monkeypatch, value):
    # As the XDG spec says: a relative folder would move with the working directory.
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    monkeypatch.setenv("XDG_DATA_HOME", value)
    assert cache_dir() == home / ".cache" / "mmstudio"
    assert data_dir() == home / ".local" / "share" / "mmstudio"


def test_search_indexes_and_the_job_list_use_them(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert index_root() == Path(tmp_path / "cache" / "mmstudio" / "index")
    assert default_store_path() == tmp_path / "data" / "mmstudio" / "jobs.json"
