"""Each entry of jaxrnn.tuning.TUNING, and each kernel docstring that cites a measurement, points
at a section of benchmarks/STRATEGY.md or STRATEGY_HISTORY.md that exists."""

from __future__ import annotations

import pathlib
import re

from jaxrnn.tuning import TUNING

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _headings(path: str) -> list[str]:
    text = (ROOT / path).read_text()
    return [h.strip() for h in re.findall(r"^#{2,4} (.+)$", text, re.MULTILINE)]


def test_every_tuning_entry_names_an_existing_section_and_benchmarks():
    for platform, entry in TUNING.items():
        found = re.match(r"(benchmarks/\S+\.md), '([^']+)'", entry.source)
        assert found, (platform, entry.source)
        page, section = found.groups()
        assert section in _headings(page), (platform, page, section)
        for script in re.findall(r"benchmarks/\w+\.(?:py|sh)", entry.source):
            assert (ROOT / script).is_file(), (platform, script)


def test_kernel_docstrings_cite_existing_sections():
    cited = 0
    for path in sorted((ROOT / "jaxrnn" / "kernels").glob("*.py")):
        text = " ".join(path.read_text().split())  # citations may wrap across lines
        for page, section in re.findall(r"(benchmarks/STRATEGY\w*\.md)[^\"()]*?\"([^\"]+)\"", text):
            assert any(section.lower() in h.lower() for h in _headings(page)), (path.name, page,
                                                                                 section)
            cited += 1
    assert cited >= 3, cited
