"""bench/RESULTS.md is generated from saved JSON reports (kvtrees_bench.markdown)."""
import json

from kvtrees import cli
from kvtrees_bench import markdown
from kvtrees_bench.report import validate

TINY = ["--num", "300", "--batch", "100", "--repeat", "1", "--progress", "none", "--plain"]


def test_results_file_from_reports(tmp_path):
    paths = []
    for name, wl in (("a", "fillrandom,readrandom"), ("b", "fillseq")):
        path = tmp_path / f"{name}.json"
        assert cli.main(["bench", *TINY, "--workloads", wl, "--dir", str(tmp_path),
                         "--json", str(path), "--plot", str(tmp_path / "plots" / name)]) == 0
        paths.append(path)
    out = tmp_path / "RESULTS.md"
    assert markdown.main([str(out), *map(str, paths)]) == 0
    text = out.read_text()
    for path in paths:
        rep = json.loads(path.read_text())
        assert validate(rep) == []
        assert rep["command"] in text                  # the exact command of each run
    assert text.count("\nworkload ") == 2              # one table per report
    assert "readrandom  btree" in text and "fillseq  " in text
    assert "AMD" in text or "CPUs" in text             # the machine line


def test_bad_input_is_refused(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"schema": 1}))
    assert markdown.main([str(tmp_path / "o.md"), str(bad)]) == 2
    assert markdown.main([str(tmp_path / "o.md")]) == 2
