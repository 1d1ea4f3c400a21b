"""What the bench scenarios share (bench/scenario.py, bench/options.py, bench.plot.figure), checked
against the committed records in bench/results: no daemon, no network."""

from __future__ import annotations

import argparse
import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from bench import joinstorm, longtail, memory, scenario
from bench.publisher import Workload

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
TOOLS = {"joinstorm": joinstorm, "longtail": longtail, "memory": memory}
COMMITTED = {
    "joinstorm": "2026-12-05-joinstorm-gate.json",
    "longtail": "2026-12-05-longtail.json",
    "memory": "2026-12-05-memory-final-vs-janus.json",
}


def committed(name: str) -> dict[str, Any]:
    with open(RESULTS / COMMITTED[name]) as f:
        r: dict[str, Any] = json.load(f)
    return r


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_scenario_options_keep_the_names_and_defaults_of_the_committed_records(name: str) -> None:
    """Protects the scenarios' command lines as the shared option helpers build them: every option a
    committed record carries under `options` is still an option of the tool, under the same name and
    in the same order, with the same default where the record ran with it (so a new run of the
    committed command line means the same thing); `--json` stays out of the record."""
    r = committed(name)
    now = vars(TOOLS[name].parser().parse_args([]))
    assert "json" in now and "json" not in r["options"]
    assert [k for k in now if k in r["options"]] == list(r["options"])
    for key in ("targets", "note", "cpu", "concurrency"):
        assert key in now, key
    assert now["targets"] == ["jasmin"]
    parsed = TOOLS[name].parser().parse_args(["--targets", "jasmin,janus", "--cpu", "-1", "--note", "n"])
    assert (parsed.targets, parsed.cpu, parsed.note) == (["jasmin", "janus"], -1, "n")


def test_only_the_issue16_scenarios_pin_this_tool_and_take_the_disturbance_options() -> None:
    """Protects which tool takes which shared option: longtail and joinstorm pin this tool
    (`--tool-cpu`), set its scheduling and rerun disturbed work (`--max-other`, `--reruns`); memory
    pins only the SFU and takes none of them."""
    for tool in (joinstorm, longtail):
        o = tool.parser().parse_args(["--tool-cpu", "-1", "--max-other", "5", "--reruns", "2", "--sched", "nice"])
        assert (o.tool_cpu, o.max_other, o.reruns, o.sched) == (-1, 5.0, 2, "nice")
    keys = vars(memory.parser().parse_args([]))
    assert not {"tool_cpu", "max_other", "reruns", "sched", "sample_every", "rtcp_every"} & set(keys)


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_unknown_targets_are_refused_with_a_clear_message(name: str) -> None:
    """Protects bad input on every scenario's command line: an unknown target is refused before any
    SFU starts, naming it and the targets there are."""
    with pytest.raises(SystemExit) as e:
        TOOLS[name].main(["--targets", "jasmin,mediasoup"])
    assert str(e.value) == "unknown target(s) ['mediasoup'] (jasmin, janus)"


def test_the_record_header_is_the_committed_records_one() -> None:
    """Protects the JSON record's shape the committed records have: scenario, start, machine,
    workload, options (without --json), the scenario's own fields, the targets, the note, in order."""
    o = argparse.Namespace(targets=["jasmin"], json="/tmp/x.json", note="quiet machine", cpu=0)
    r = scenario.record("joinstorm", o, Workload(), "2026-12-05T17:31:46+00:00", {"jasmin": {}}, criteria={}, method={})
    assert list(r) == [k for k in committed("joinstorm") if k != "ratios"]
    assert r["options"] == {"targets": ["jasmin"], "note": "quiet machine", "cpu": 0}
    assert (r["scenario"], r["note"], r["targets"]) == ("joinstorm", "quiet machine", {"jasmin": {}})
    assert set(r["machine"]) >= {"cpu", "cores"} and r["workload"]["pacing_factor"] == Workload().pacing_factor
    m = scenario.record("memory", o, Workload(), "t", {}, viewers_per_show=2)
    assert list(m) == [k for k in committed("memory") if not k.startswith("ratio")]


def table(name: str, r: dict[str, Any]) -> list[str]:
    buf = io.StringIO()
    if name == "memory":  # memory's table goes to stdout
        with redirect_stdout(buf):
            memory.print_table(r)
    else:
        TOOLS[name].print_table(r, buf)
    return buf.getvalue().splitlines()


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tables_of_the_committed_records(name: str) -> None:
    """Protects the printed tables (shared heading, rows, note): the first line names the scenario,
    its start and machine; joinstorm and longtail print one right-aligned row per step under their
    columns; the record's note, when it has one, ends the table."""
    r = dict(committed(name), note="idle machine")
    lines = table(name, r)
    assert not any(ln.startswith("note:") for ln in table(name, dict(r, note="")))
    title = {"joinstorm": "join storm", "longtail": "long tail", "memory": "memory, RSS"}[name]
    assert lines[0] == f"{title} ({r['started']}, {r['machine']['cpu']}, {r['machine']['cores']} cores)"
    assert lines[-1] == f"note: {r['note']}"
    if name != "memory":
        width = 8 if name == "joinstorm" else 10
        key = "storms" if name == "joinstorm" else "steps"
        steps = [s for t in r["targets"].values() for s in t[key]]
        assert lines[1].split()[0] == "target" and lines[1].startswith(" " * (width - len("target")) + "target  ")
        rows = lines[2 : 2 + len(steps)]
        assert [ln.split()[0] for ln in rows] == [n for n, t in r["targets"].items() for _ in t[key]]
        assert all(len(ln) >= len(lines[1]) for ln in rows)


def test_write_puts_the_json_and_the_png_next_to_it(tmp_path: Path) -> None:
    """Protects the record files: `scenario.write` writes the JSON (with its parent folder) and,
    given a plot, the PNG drawn through `bench.plot.figure` next to it; without one (memory),
    the JSON alone."""
    r = committed("longtail")
    png = scenario.write(r, str(tmp_path / "new" / "lt.json"), longtail.plot)
    assert png == str(tmp_path / "new" / "lt.png")
    assert json.loads((tmp_path / "new" / "lt.json").read_text()) == r
    assert (tmp_path / "new" / "lt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert scenario.write(committed("memory"), str(tmp_path / "m.json")) is None
    assert json.loads((tmp_path / "m.json").read_text()) == committed("memory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "new"]
