"""Offline store tools of the `kvtrees` command: check, dump and snapshot save/restore.

    kvtrees check DIR [--raw]             full invariant walk; exit 0 ok, 1 damaged, 2 error
    kvtrees dump DIR [--prefix P] [--revision R] [--json] [--raw]
    kvtrees snapshot save DIR FILE        a consistent copy of the store in one file
    kvtrees snapshot restore FILE DIR     a new store directory from that file
    kvtrees snapshot status FILE          revision, keys, size and hash of a snapshot file

Every tool opens the directory read-only (a shared lock), so it never changes the store
and can run beside other readers; a running writer holds the directory exclusively and
the tool then exits with status 2 and says so. A snapshot file is the data file of a
freshly checkpointed copy (the store's snapshot() with an empty log): like etcd's
snapshot.db it is a complete store on its own.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
from typing import Callable, Dict, List, Optional

import kvtrees

USAGE = """\
  check      verify a store offline: kvtrees check DIR (exit 0 ok, 1 damaged, 2 error)
  dump       print a store's keys, values and revisions: kvtrees dump DIR [--json]
  snapshot   kvtrees snapshot save DIR FILE | restore FILE DIR | status FILE
"""

EXIT_OK, EXIT_DAMAGED, EXIT_ERROR = 0, 1, 2
DATA_FILE = "data.kvt"


class ToolError(Exception):
    """A failure the tool reports in one line, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def _explain(path: str, err: BaseException) -> ToolError:
    """One line for a failure to open or read the store at path."""
    if isinstance(err, kvtrees.CorruptionError):
        return ToolError(f"{path}: damaged: {err}", EXIT_DAMAGED)
    if isinstance(err, kvtrees.LockedError):
        return ToolError(f"{path}: in use by a writer (stop it first): {err}")
    return ToolError(f"{path}: {err}")


def _open_read_only(path: str):
    if not os.path.isdir(path):
        raise ToolError(f"{path}: no such directory")
    if not os.path.exists(os.path.join(path, DATA_FILE)):
        raise ToolError(f"{path}: not a kvtrees store (no {DATA_FILE})")
    try:
        return kvtrees.open(path, read_only=True)
    except (kvtrees.KvtreesError, OSError) as e:
        raise _explain(path, e) from None


# ---- printing keys and values --------------------------------------------------------

def _readable(b: bytes) -> Optional[str]:
    """b as text when it is UTF-8 without control characters, else None."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return s if s.isprintable() else None


def _text_field(b: bytes) -> str:
    s = _readable(b)
    return json.dumps(s, ensure_ascii=False) if s is not None else \
        "base64:" + base64.b64encode(b).decode()


def _json_fields(name: str, b: bytes) -> Dict[str, str]:
    s = _readable(b)
    return {name: s} if s is not None else {name + "_base64": base64.b64encode(b).decode()}


def _kv_line(value: bytes, kv, as_json: bool) -> str:
    if as_json:
        d: Dict[str, object] = {}
        d.update(_json_fields("key", kv.key))
        d.update(_json_fields("value", value))
        d.update(create_revision=kv.create_revision, mod_revision=kv.mod_revision,
                 version=kv.version, lease=kv.lease)
        return json.dumps(d, ensure_ascii=False)
    return (f"{_text_field(kv.key)} = {_text_field(value)}  (create {kv.create_revision}, "
            f"mod {kv.mod_revision}, version {kv.version}, lease {kv.lease})")


# ---- the commands ------------------------------------------------------------------

def cmd_check(args) -> int:
    """Engine walk (order, structure, every page's checksum) plus the store's invariants
    (with --raw: the engine walk only, for a directory of kvtrees.open_engine)."""
    if args.raw:
        return _check_raw(args)
    db = _open_read_only(args.dir)
    try:
        db.check()
        st = db.status()
        count = db.range(b"\0", b"\0", count_only=True).count
    except kvtrees.KvtreesError as e:
        raise _explain(args.dir, e) from None
    finally:
        db.close()
    print(f"ok: {args.dir}: engine {st.engine}, revision {st.revision}, compacted at "
          f"{st.compact_revision}, {count} keys, {st.db_size} bytes")
    return EXIT_OK


def _check_raw(args) -> int:
    try:
        with kvtrees.open_engine(args.dir, read_only=True) as eng:
            eng.check()
            st = eng.stats()
    except (kvtrees.KvtreesError, OSError) as e:
        raise _explain(args.dir, e) from None
    print(f"ok: {args.dir}: engine {st['engine']} (checked as a raw engine), "
          f"{st['entries']} entries, {st['file_size']} bytes")
    return EXIT_OK


def cmd_dump(args) -> int:
    """Every live key (or those under --prefix) at the current or --revision revision."""
    if args.raw:
        return _dump_raw(args)
    db = _open_read_only(args.dir)
    out = sys.stdout
    try:
        rev = args.revision or db.revision
        if not args.json:
            out.write(f"# {args.dir}: engine {db.status().engine}, revision {rev}, "
                      f"compacted at {db.compact_revision}\n")
        for value, kv in db.get_prefix(args.prefix.encode(), revision=rev):
            out.write(_kv_line(value, kv, args.json) + "\n")
    except kvtrees.KvtreesError as e:
        raise _explain(args.dir, e) from None
    finally:
        db.close()
    return EXIT_OK


def _dump_raw(args) -> int:
    """The engine's own keys and values (the MVCC encoding), hex, one pair a line."""
    try:
        eng = kvtrees.open_engine(args.dir, read_only=True)
    except (kvtrees.KvtreesError, OSError) as e:
        raise _explain(args.dir, e) from None
    try:
        for k, v in eng.items():
            sys.stdout.write(f"{k.hex()} {v.hex()}\n")
    except kvtrees.KvtreesError as e:
        raise _explain(args.dir, e) from None
    finally:
        eng.close()
    return EXIT_OK


def _write_file_atomically(src: str, dest: str) -> None:
    """Copy src to dest through dest.tmp, fsynced, then renamed: never a torn FILE."""
    tmp = dest + ".tmp"
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dest)


def cmd_snapshot_save(args) -> int:
    if os.path.exists(args.file):
        raise ToolError(f"{args.file}: exists (not overwritten)")
    db = _open_read_only(args.dir)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.file))) as t:
        copy = os.path.join(t, "snap")
        try:
            db.snapshot(copy)
            rev = db.revision
        except kvtrees.KvtreesError as e:
            raise _explain(args.dir, e) from None
        finally:
            db.close()
        _verify_store_dir(copy, args.dir)
        _write_file_atomically(os.path.join(copy, DATA_FILE), args.file)
    print(f"saved {args.file}: revision {rev}, {os.path.getsize(args.file)} bytes")
    return EXIT_OK


def _verify_store_dir(path: str, name: str):
    """Open read-only and check; returns (status, key count)."""
    try:
        with kvtrees.open(path, read_only=True) as db:
            db.check()
            return db.status(), db.range(b"\0", b"\0", count_only=True).count, db.hash_kv()
    except kvtrees.KvtreesError as e:
        raise _explain(name, e) from None


def cmd_snapshot_restore(args) -> int:
    if not os.path.isfile(args.file):
        raise ToolError(f"{args.file}: no such snapshot file")
    if os.path.exists(args.dir) and os.listdir(args.dir):
        raise ToolError(f"{args.dir}: exists and is not empty (not overwritten)")
    created = not os.path.exists(args.dir)
    os.makedirs(args.dir, exist_ok=True)
    try:
        _write_file_atomically(args.file, os.path.join(args.dir, DATA_FILE))
        st, count, _ = _verify_store_dir(args.dir, args.file)
    except BaseException:
        shutil.rmtree(args.dir) if created else _empty_dir(args.dir)
        raise
    print(f"restored {args.dir}: engine {st.engine}, revision {st.revision}, {count} keys")
    return EXIT_OK


def _empty_dir(path: str) -> None:
    for name in os.listdir(path):
        p = os.path.join(path, name)
        shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)


def cmd_snapshot_status(args) -> int:
    if not os.path.isfile(args.file):
        raise ToolError(f"{args.file}: no such snapshot file")
    with tempfile.TemporaryDirectory() as t:
        shutil.copyfile(args.file, os.path.join(t, DATA_FILE))
        st, count, (h, _, rev) = _verify_store_dir(t, args.file)
    if args.json:
        print(json.dumps({"hash": h, "revision": rev, "total_keys": count,
                          "total_size": os.path.getsize(args.file), "engine": st.engine}))
    else:
        print(f"{args.file}: engine {st.engine}, revision {rev}, {count} keys, "
              f"{os.path.getsize(args.file)} bytes, hash {h:08x}")
    return EXIT_OK


# ---- argument parsing --------------------------------------------------------------

def _parser(cmd: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"kvtrees {cmd}")
    if cmd == "check":
        p.add_argument("dir", help="store directory")
        p.add_argument("--raw", action="store_true",
                       help="check the engine only (a directory of kvtrees.open_engine)")
        p.set_defaults(fn=cmd_check)
    elif cmd == "dump":
        p.add_argument("dir", help="store directory")
        p.add_argument("--prefix", default="", help="only keys starting with this")
        p.add_argument("--revision", type=int, default=0, help="read at this revision")
        p.add_argument("--json", action="store_true", help="one JSON object a line")
        p.add_argument("--raw", action="store_true",
                       help="the engine's own keys and values in hex (any kvtrees directory)")
        p.set_defaults(fn=cmd_dump)
    else:
        sub = p.add_subparsers(dest="action", required=True)
        s = sub.add_parser("save", help="copy a store into one snapshot file")
        s.add_argument("dir")
        s.add_argument("file")
        s.set_defaults(fn=cmd_snapshot_save)
        r = sub.add_parser("restore", help="make a new store directory from a snapshot file")
        r.add_argument("file")
        r.add_argument("dir")
        r.set_defaults(fn=cmd_snapshot_restore)
        t = sub.add_parser("status", help="revision, key count, size and hash of a snapshot")
        t.add_argument("file")
        t.add_argument("--json", action="store_true")
        t.set_defaults(fn=cmd_snapshot_status)
    return p


COMMANDS: Dict[str, Callable[[List[str]], int]] = {}


def main(cmd: str, argv: List[str]) -> int:
    """Run tool cmd with its arguments; returns the exit status (errors on stderr)."""
    args = _parser(cmd).parse_args(argv)
    try:
        return args.fn(args)
    except ToolError as e:
        print(f"kvtrees {cmd}: {e}", file=sys.stderr)
        return e.status
    except BrokenPipeError:          # `kvtrees dump DIR | head`
        return EXIT_OK


for _name in ("check", "dump", "snapshot"):
    COMMANDS[_name] = (lambda name: lambda argv: main(name, argv))(_name)
