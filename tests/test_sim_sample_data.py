"""The committed week is exactly what the README's command writes, and stays under 10 MB."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from syncwatch.cli import main
from syncwatch.sim.generate import FILES

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
LIMIT_BYTES = 10_000_000


def readme_command() -> list[str]:
    text = (SAMPLE / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^syncwatch (sim --generate .*)$", text, re.MULTILINE)
    assert found, "the README must show the command that made the sample data"
    return shlex.split(found.group(1))


def test_the_readme_command_rewrites_the_sample_data_byte_for_byte(tmp_path: Path) -> None:
    argv = readme_command()
    argv[argv.index("--out") + 1] = str(tmp_path)
    assert main(argv) == 0
    for relative in FILES.values():
        assert (tmp_path / relative).read_bytes() == (SAMPLE / relative).read_bytes(), relative


def test_the_sample_data_fits_in_ten_megabytes() -> None:
    assert sum(path.stat().st_size for path in SAMPLE.rglob("*") if path.is_file()) <= LIMIT_BYTES
