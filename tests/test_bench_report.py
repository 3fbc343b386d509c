"""The bench report: issue 10's targets are ratios within each run, and rewriting
the README's generated table keeps every hand-written section around it."""

from __future__ import annotations

from pathlib import Path

from bench import report


def _row(first: float, restore: float, **extra: float) -> dict[str, float]:
    return {"first_backup_s": first, "restore_all_s": restore, **extra}


def test_targets_are_ratios_within_each_run() -> None:
    # Run 1 is slow for everyone (load), run 2 fast: the ratio of each run is
    # 0.5, although the ratio of the medians would not be.
    results = {
        "filetwin": [_row(10, 4), _row(2, 1), _row(3, 1)],
        "filetwin-enc": [_row(11, 5), _row(2.4, 1), _row(3.3, 1)],
        "restic": [_row(20, 9), _row(4, 2), _row(6, 2)],
        "borg": [_row(30, 9), _row(5, 2), _row(6, 2)],
        "borg-enc": [_row(22, 9), _row(4.1, 2), _row(6.6, 2)],
        "rsync": [_row(5, 8, restore_all_nofsync_s=2), _row(1, 2, restore_all_nofsync_s=1),
                  _row(1, 2, restore_all_nofsync_s=1)],
    }  # fmt: skip
    out = report.summarise(results)
    t = out[report.TARGETS]
    assert t["first_backup_filetwin"]["median"] == 0.5
    assert t["first_backup_filetwin"]["against"] == ["restic", "borg"]
    assert t["first_backup_filetwin-enc"]["against"] == ["restic", "borg-enc"]
    assert t["restore_all_filetwin"]["median"] == 0.5
    assert t["restore_all_filetwin_nofsync"]["median"] == 1.0
    assert round(t["encryption_first_backup_s"]["median"], 6) == 1.1
    # like with like: filetwin against borg -e none only
    assert out["filetwin"]["first_backup_s"]["vs_like"]["peer"] == "borg"
    assert out["filetwin-enc"]["first_backup_s"]["vs_like"]["peer"] == "restic"
    lines = report.peer_lines(out)
    text = "\n".join(lines)
    assert "first backup, filetwin ÷ the faster of restic and borg: 0.500×" in text
    assert "target ≤ 0.80×: met" in text
    assert "filetwin-enc ÷ filetwin: 1.100×" in text  # at the limit: met
    assert "filetwin-enc ÷ best of restic, borg -e repokey (like with like)" in lines[0]


def test_missed_target_is_marked() -> None:
    results = {
        "filetwin": [_row(9, 9)],
        "restic": [_row(10, 9)],
        "borg": [_row(10, 9)],
        "rsync": [_row(1, 3)],
    }
    text = "\n".join(report.peer_lines(report.summarise(results)))
    assert "0.900×" in text and "**missed**" in text


def test_readme_rewrite_keeps_sections_after_the_table(tmp_path: Path) -> None:
    results = {"filetwin": [_row(1, 1)], "borg": [_row(2, 2)], "rsync": [_row(1, 1)]}
    out = {
        "meta": {"date": "d", "machine": "m", "runs": 1, "versions": {}},
        "peers": report.summarise(results),
    }
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Benchmarks\n\nProse naming the mark: (`<!-- results -->`).\n\n"
        "<!-- results -->\n\nold table\n\n## Replicas\n\nkept text\n"
    )
    report.write_readme(readme, out)
    once = readme.read_text()
    assert once.startswith("# Benchmarks\n\nProse naming the mark: (`<!-- results -->`).\n")
    assert "old table" not in once
    assert "| first_backup_s |" in once
    assert once.endswith("## Replicas\n\nkept text\n")
    report.write_readme(readme, out)
    assert readme.read_text() == once  # idempotent
