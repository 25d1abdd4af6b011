"""``tinyml size --compare``: the pull-request comment from two real size reports, and the comment poster.

The fixtures are the reports ``tinyml size --format json`` wrote for two real builds of
samples/mnist on qemu_cortex_m3 and nucleo_f446re: the shipped model (base) and the same network
with a 256-unit Dense layer instead of 64 (head; over the qemu_cortex_m3 flash budget).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zephyr_tinyml.cli import main
from zephyr_tinyml.errors import TinymlError
from zephyr_tinyml.firmware.pr_comment import (MARKER, MAX_BODY, CommentError, comment_body, find_comment,
                                               pr_number)
from zephyr_tinyml.firmware.size_compare import (accepted_reason, build_facts, compare, comparison_json, load_report,
                                                 render_markdown)

FIXTURES = Path(__file__).parent / "fixtures" / "size"
BASE, HEAD = FIXTURES / "mnist-base.json", FIXTURES / "mnist-wide-dense.json"


def test_component_deltas_add_up_to_the_total_to_the_byte() -> None:
    comparison = compare(load_report(BASE), load_report(HEAD))
    assert {(d.model, d.board) for d in comparison.builds} == {("mnist", "qemu_cortex_m3"), ("mnist", "nucleo_f446re")}
    for d in comparison.builds:
        assert d.status == "changed"
        assert sum(c.d_flash for c in d.components) == d.d_flash
        assert sum(c.d_ram for c in d.components) == d.d_ram
        assert sum(c.head_flash for c in d.components) == d.total("head", "flash")
        # The wider Dense layer is the model's weights: the largest change, listed first.
        assert d.components[0].name == "model weights" and d.components[0].d_flash > 30_000
    # Largest change first across builds too.
    deltas = [abs(d.d_flash) + abs(d.d_ram) for d in comparison.builds]
    assert deltas == sorted(deltas, reverse=True)


def test_over_budget_head_fails_until_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "comment.md"
    assert main(["size", "--compare", str(BASE), "--head", str(HEAD), "--out", str(out)]) == 1
    comment = out.read_text()
    assert comment.startswith(MARKER + "\n")
    assert "**Over budget**" in comment and "mnist on qemu_cortex_m3: flash" in comment
    assert "is over its budget of 81,920 B by" in comment
    assert "<details><summary>mnist on nucleo_f446re: by component" in comment
    assert "BUDGET EXCEEDED: mnist on qemu_cortex_m3: flash" in capsys.readouterr().err

    body = tmp_path / "pr.txt"
    body.write_text("Wider dense layer.\n\nSize-increase-accepted: 4 points of accuracy are worth 37 KB\n")
    assert main(["size", "--compare", str(BASE), "--head", str(HEAD), "--pr-body", str(body),
                 "--out", str(out)]) == 0
    assert "**Over budget, accepted** (4 points of accuracy are worth 37 KB)" in out.read_text()
    assert main(["size", "--compare", str(BASE), "--head", str(HEAD), "--accept", "label size-increase-accepted",
                 "--format", "json", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["accepted"] == "label size-increase-accepted" and len(data["breaches"]) == 1


def test_same_report_twice_is_all_zeros_and_within_budget() -> None:
    base = load_report(BASE)
    comparison = compare(base, base)
    assert comparison.breaches() == []
    comment = render_markdown(comparison)
    assert "Every build is within its budget (2 of 2 builds have one)." in comment
    assert all(d.d_flash == 0 and d.d_ram == 0 for d in comparison.builds)
    assert "| 0 (0 %) |" in comment


def test_new_and_removed_builds_are_reported_as_such() -> None:
    base, head = load_report(BASE), load_report(HEAD)
    head["builds"] = [b for b in head["builds"] if b["board"] == "qemu_cortex_m3"]
    base["builds"] = [b for b in base["builds"] if b["board"] == "nucleo_f446re"]
    comparison = compare(base, head)
    assert sorted(d.status for d in comparison.builds) == ["new", "removed"]
    comment = render_markdown(comparison, run_url="https://github.com/o/r/actions/runs/1")
    assert "| mnist | nucleo_f446re | removed (was " in comment and "| new |" in comment
    assert "[the run that measured this](https://github.com/o/r/actions/runs/1)" in comment
    assert {b["status"] for b in comparison_json(comparison)["builds"]} == {"new", "removed"}


def test_reports_record_commit_toolchain_and_zephyr() -> None:
    for path in (BASE, HEAD):
        report = load_report(path)
        assert len(report["commit"]) >= 40
        for build in report["builds"]:
            assert build["zephyr"] and build["toolchain"] and build["app"] == "samples/mnist"
            assert set(build["budget"]) == {"flash", "ram"}


def test_a_file_that_is_not_a_size_report_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twister.json"
    path.write_text(json.dumps({"environment": {}, "testsuites": []}))
    with pytest.raises(TinymlError, match="schema None, expected 'zephyr-tinyml-size-report/1'"):
        load_report(path)
    with pytest.raises(TinymlError, match="no such size report"):
        load_report(tmp_path / "missing.json")


def test_accept_line_is_read_from_the_pull_request_text() -> None:
    assert accepted_reason(None, "text\nsize-increase-accepted:   new layer  \n") == "new layer"
    assert accepted_reason(None, "Size-increase-accepted:\n") is None
    assert accepted_reason("label", None) == "label"


def test_comment_poster_finds_its_own_comment_and_refuses_odd_input() -> None:
    comments = [{"id": 1, "user": {"login": "someone"}, "body": MARKER + " copied"},
                {"id": 2, "user": {"login": "github-actions[bot]"}, "body": "other bot text"},
                {"id": 3, "user": {"login": "github-actions[bot]"}, "body": MARKER + "\n## Flash"}]
    assert find_comment(comments) == 3 and find_comment(comments[:2]) is None
    assert pr_number("42\n") == 42
    for bad in ("", "0", "42; rm -rf /", "-1", "1" * 11):
        with pytest.raises(CommentError):
            pr_number(bad)
    assert comment_body("## Flash").startswith(MARKER + "\n")
    long = comment_body(MARKER + "\n" + "| row |\n" * 20_000)
    assert len(long) <= MAX_BODY + 200 and long.endswith("artifact of the run)\n")


def test_comment_poster_needs_only_the_standard_library() -> None:
    """size-comment.yml runs it with the runner's python3 and no installation step."""
    code = ("import sys; sys.path.insert(0, 'python'); import zephyr_tinyml.firmware.pr_comment as m; "
            "assert 'yaml' not in sys.modules and 'elftools' not in sys.modules and 'numpy' not in sys.modules")
    run = subprocess.run([sys.executable, "-I", "-c", code], cwd=Path(__file__).parents[1],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_build_facts_name_the_tflm_and_cmsis_nn_revisions(tmp_path: Path) -> None:
    """A build's TFLM and CMSIS-NN commits come from the module folders its zephyr_modules.txt lists:
    a git checkout gives its commit, a folder outside git says so."""
    tflm, cmsis_nn = tmp_path / "tflite-micro", tmp_path / "cmsis-nn"
    tflm.mkdir()
    cmsis_nn.mkdir()
    git = ["git", "-C", str(tflm), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    (tflm / "README").write_text("tflm\n")
    subprocess.run(git + ["add", "README"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "pin"], check=True)
    commit = subprocess.run(git + ["rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    build = tmp_path / "build"
    build.mkdir()
    (build / "zephyr_modules.txt").write_text(f'"tflite-micro":"{tflm}":"${{ZEPHYR_TFLITE_MICRO_CMAKE_DIR}}"\n'
                                              f'"cmsis-nn":"{cmsis_nn}":"${{ZEPHYR_CMSIS_NN_CMAKE_DIR}}"\n')
    assert build_facts(build)["modules"] == f"tflite-micro {commit}, cmsis-nn unknown revision"
