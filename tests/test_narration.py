"""No tracked file narrates how jaxrnn was developed; every file speaks to a user.

A measurement says its date, machine and command ("2026-11-30, 2-core AMD EPYC, ``python
benchmarks/rnn_speed.py ...``"), not which numbered round of work made it or which work item
asked for it. ``NARRATION`` names the phrases that do the latter; ``ALLOWED`` lists the lines
where such a phrase is a legitimate use (a citation, an upstream project's issue).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]

NARRATION: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "numbered session": r"\bsessions? \d",
        "this or another session": r"\b(this|first|later|earlier|previous|next) sessions?\b",
        "a session's work": r"\bsession's\b",
        "numbered issue": r"\bissues? \d",
        "an issue's target": r"\b(the|this) issue's\b",
        "quoted in the issue": r"\b(in|by) the issue\b",
        "numbered round": r"\brounds? \d",
        "rounds of work": r"\brounds? of work\b",
        "numbered work item": r"\bwork[- ]items?\b",
        "what the project has had": r"\bthis project (has|had|never)\b",
        "a lent machine": r"\b(was|were|is|be|been|not) lent\b|\blent (a|to|one)\b",
        "this task": r"\bthis task\b",
        "the speed issue": r"\bthe (speed|gpu|cpu) (issue|work)\b",
        "tried this time": r"\btried (this|last) (time|run)\b",
    }.items()
}

# (path, a regular expression the line matches): a legitimate use on that line.
ALLOWED: list[tuple[str, re.Pattern[str]]] = [
    # an upstream project's issue tracker (e.g. jax-ml/jax#12345, .../issues/12345)
    ("*", re.compile(r"[\w.-]+/[\w.-]+#\d+|github\.com/[\w.-]+/[\w.-]+/issues/\d+")),
]

# Files that still narrate and are rewritten on another branch; each entry is checked to still
# have a hit, so that a file leaves this set once it is clean.
PENDING: set[str] = {
    # rewritten on another branch
}

SKIP_DIRS = {".git", ".venv", ".ci-venv", "site", "runs", "__pycache__", ".pytest_cache",
             ".ruff_cache", "node_modules"}
SELF = "tests/test_narration.py"


def tracked_files() -> list[str]:
    """The repository's tracked files (``git ls-files``), or a walk of the tree without the
    virtual environments, build and run folders when there is no git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode()
        files = [f for f in out.split("\0") if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    found = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        found += [str((pathlib.Path(folder) / n).relative_to(ROOT)) for n in names]
    return found


def text_lines(path: pathlib.Path) -> list[str] | None:
    """The file's lines, or None for a binary or unreadable file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def allowed(path: str, line: str) -> bool:
    return any((where == "*" or where == path) and rule.search(line) for where, rule in ALLOWED)


def hits(path: str) -> list[str]:
    """``path:line: [phrase] text`` for each narrating line of a file."""
    lines = text_lines(ROOT / path)
    found = []
    for number, line in enumerate(lines or [], start=1):
        for name, rule in NARRATION.items():
            if rule.search(line) and not allowed(path, line):
                found.append(f"{path}:{number}: [{name}] {line.strip()[:160]}")
    return found


def test_phrases_catch_what_they_name():
    """Each phrase matches the narration it is named for, and ordinary prose passes."""
    narrating = [
        "measured in session 5", "Tried this session and not kept", "the first session's tables",
        "Against issue 6's CPU targets", "the issue's 1.5x target", "as quoted in the issue",
        "in round 3", "no GPU was lent to this task", "this project has had no GPU",
        "what the speed issue asked for", "the work item asks",
        "no session so far has been lent one",
    ]
    for text in narrating:
        assert any(rule.search(text) for rule in NARRATION.values()), text
    prose = [
        "2026-11-30, 2-core AMD EPYC CPU: 180.30 ms", "rounds the result to bf16",
        "a reader typing them into one session", "see jax-ml/jax#12345 for the issue",
        "the issue tracker of the TensorFlow models repository is upstream",
    ]
    for text in prose:
        flagged = [n for n, rule in NARRATION.items()
                   if rule.search(text) and not allowed("x", text)]
        assert not flagged, (text, flagged)


def test_no_tracked_file_narrates_the_projects_history():
    files = [f for f in tracked_files() if f != SELF]
    assert len(files) > 20, files  # the listing found the repository
    found = [h for f in files if f not in PENDING for h in hits(f)]
    assert not found, (
        "these lines narrate the project's development; say the date, machine and command of a "
        "measurement instead (or add a legitimate use to ALLOWED):\n" + "\n".join(found))


def test_pending_files_still_need_their_rewrite():
    """A file in PENDING that no longer narrates leaves the set (so the check covers it again)."""
    present = set(tracked_files())
    clean = sorted(f for f in PENDING if f in present and not hits(f))
    assert not clean, f"no narration left in {clean}: remove them from PENDING"
