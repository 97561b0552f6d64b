"""`kvtrees bench` command line: JSON output validated, bad arguments rejected clearly."""
import copy
import json
import os
import subprocess
import sys

import pytest

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
try:
    import kvtrees_bench  # noqa: F401
except ImportError:
    sys.path.insert(0, SRC)

from kvtrees import cli  # noqa: E402
from kvtrees_bench import report as rep  # noqa: E402
from kvtrees_bench.cli import size  # noqa: E402

TINY = ["--num", "300", "--batch", "100", "--repeat", "2", "--progress", "none", "--plain"]


def peers_installed():
    out = ["sqlite"]
    for mod, name in (("lmdb", "lmdb"), ("rocksdict", "rocksdb")):
        try:
            __import__(mod)
            out.append(name)
        except ImportError:
            pass
    return ",".join(out)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    path = d / "out" / "report.json"
    rc = cli.main(["bench", *TINY, "--peers", peers_installed(), "--dir", str(d),
                   "--workloads", "fillrandom,readrandom,ycsb-a,iibench",
                   "--json", str(path), "--plot", str(d / "plots")])
    return rc, path, d


def test_json_report_is_valid(report_file):
    rc, path, _d = report_file
    assert rc == 0
    data = json.loads(path.read_text())
    assert rep.validate(data) == []
    assert data["config"]["num"] == 300 and data["config"]["repeat"] == 2
    assert data["command"].startswith("kvtrees bench ")
    assert "sqlite" in data["targets"]
    n_targets = len(data["targets"])
    assert len(data["runs"]) == 2 * n_targets * 4
    assert len(data["summary"]) == n_targets * 4
    assert data["machine"]["nproc"] >= 1
    for s in data["summary"]:
        assert s["status"] == "ok", s
        assert s["reps"] == 2


def test_plots_written(report_file):
    _rc, _path, d = report_file
    pytest.importorskip("matplotlib")
    for name in ("workloads.png", "iibench.png"):
        f = d / "plots" / name
        assert f.exists() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validator_catches_damage(report_file):
    _rc, path, _d = report_file
    good = json.loads(path.read_text())
    breakages = [
        lambda r: r.pop("summary"),
        lambda r: r["runs"][0].update(ops_per_s="fast"),
        lambda r: r["runs"][0].pop("lat_p99_us"),
        lambda r: r["runs"][0].update(lat_p50_us=10.0, lat_p99_us=1.0),
        lambda r: r["runs"][0].update(lat_unit="year"),
        lambda r: r["runs"][0].update(ops=0),
        lambda r: r["summary"][0].update(ops_per_s=1e12),
        lambda r: r["summary"][0].update(target="nobody"),
        lambda r: r.update(schema=99),
    ]
    for i, damage in enumerate(breakages):
        bad = copy.deepcopy(good)
        damage(bad)
        assert rep.validate(bad), f"breakage {i} not detected"


def test_plain_table_lists_every_row(report_file, capsys):
    _rc, path, _d = report_file
    data = json.loads(path.read_text())
    rep.print_table(data, use_rich=False)
    out = capsys.readouterr().out
    for s in data["summary"]:
        assert any(line.startswith(s["workload"]) and s["target"] in line
                   for line in out.splitlines())


@pytest.mark.parametrize("args, message", [
    (["--workloads", "fillseq,nosuch"], "unknown workload: nosuch"),
    (["--engines", "btree,avl"], "unknown engine: avl"),
    (["--peers", "mongodb"], "unknown peer: mongodb"),
    (["--value-size", "-1"], "must not be negative"),
    (["--cache-size", "lots"], "not a size"),
    (["--num", "-10"], "non-negative integer"),
    (["--num", "0"], "--num must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--key-size", "0"], "--key-size must be 1..4096"),
    (["--key-size", "1", "--num", "1000"], "cannot hold"),
    (["--engines", "none"], "nothing to run"),
])
def test_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_command(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_size_parser():
    assert size("64MiB") == 64 << 20 and size("4k") == 4096 and size("1.5KiB") == 1536


def test_python_dash_m(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "kvtrees", "bench", "--list"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "ycsb-a" in p.stdout and "iibench" in p.stdout and "store" in p.stdout
    p = subprocess.run([sys.executable, "-m", "kvtrees", "bench", "--workloads", "x"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unknown workload" in p.stderr
