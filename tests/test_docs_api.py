"""docs/API.md names only what exists: every `db.<name>`, `eng.<name>`, `kvtrees.<name>`
and error it lists is there on both engines, and every public Store method is listed."""

import os
import re

import pytest

import kvtrees

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "API.md")


def doc_text() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def names(prefix: str) -> set:
    return set(re.findall(r"\b%s\.([a-z_][a-z_0-9]*)" % prefix, doc_text()))


def test_listed_names_exist(engine_name, tmp_path):
    with kvtrees.open(str(tmp_path / "s"), engine=engine_name) as db:
        missing = sorted(n for n in names("db") if not hasattr(db, n))
        assert not missing, f"docs/API.md lists db.{missing}"
        db.check()
    with kvtrees.open_engine(str(tmp_path / "e"), engine=engine_name) as eng:
        missing = sorted(n for n in names("eng") if not hasattr(eng, n))
        assert not missing, f"docs/API.md lists eng.{missing}"
        eng.check()
    missing = sorted(n for n in names("kvtrees") if not hasattr(kvtrees, n))
    assert not missing, f"docs/API.md lists kvtrees.{missing}"


def test_every_public_store_method_is_listed():
    listed = names("db")
    public = {n for n in dir(kvtrees.Store) if not n.startswith("_")}
    # Store methods the Lease object calls (documented there as its properties)
    lease_plumbing = {"lease_granted_ttl", "lease_remaining_ttl", "lease_keys"}
    missing = sorted(public - listed - lease_plumbing)
    assert not missing, f"docs/API.md does not list db.{missing}"


@pytest.mark.parametrize("name", [n for n in dir(kvtrees.errors)
                                  if n.endswith("Error")])
def test_every_error_is_listed(name):
    assert f"`{name}`" in doc_text(), f"docs/API.md does not list {name}"
