"""SEARCH/REPLACE diffs: parse them as LLMs write them, apply them to a parent program.

A diff is one or more blocks

    <<<<<<< SEARCH
    lines of the parent, quoted exactly
    =======
    the lines that replace them
    >>>>>>> REPLACE

anywhere in free text (prose and code fences around the blocks are ignored), optionally
in the envelope `<NAME>...</NAME> <DESCRIPTION>...</DESCRIPTION> <DIFF>...</DIFF>` whose
name and description become the child's lineage.

Blocks apply in order, each to the text the previous ones left, and either all apply or
the diff is refused with a `DiffError` whose first line says which block failed and what
to change, so that a person or an LLM retry can act on it. File problems (missing,
unreadable, not UTF-8, an output path that would clobber an input) are plain
`HarnessError`s: they are bad invocations, not bad diffs.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.files import write_atomically

# Trailing spaces after a marker are common in LLM output; leading ones are not accepted
# so that an indented "=======" inside quoted code stays code.
_MARKERS = {
    "search": re.compile(r"<{7}\s*SEARCH\s*$"),
    "divider": re.compile(r"={7}\s*$"),
    "replace": re.compile(r">{7}\s*REPLACE\s*$"),
}
_SHOWN = {"search": "<<<<<<< SEARCH", "divider": "=======", "replace": ">>>>>>> REPLACE"}
_NEXT = {"search": "divider", "divider": "replace", "replace": "search"}
_EVOLVE_START = re.compile(r"#.*\bEVOLVE-BLOCK-START\b")
_EVOLVE_END = re.compile(r"#.*\bEVOLVE-BLOCK-END\b")
_EXCERPT_LINES = 8


class DiffError(HarnessError):
    """A diff that cannot be parsed or applied; the message names the block and the fix."""


@dataclass(frozen=True)
class DiffBlock:
    """One SEARCH/REPLACE pair; `line` is the 1-based line of its SEARCH marker in the diff."""

    search: str
    replace: str
    line: int


@dataclass(frozen=True)
class Diff:
    """A parsed diff: its lineage (`name`, `description`) and its blocks.

    `hash` is the first 16 hex digits of the SHA-256 of the raw text's UTF-8 bytes, line
    ends as written, so that one file always has one hash.
    """

    name: str
    description: str
    blocks: tuple[DiffBlock, ...]
    hash: str


@dataclass(frozen=True)
class AppliedDiff:
    """The child program's source and notes on anything tolerated while applying."""

    source: str
    notes: tuple[str, ...]


def parse_diff(text: str, name: str = "diff") -> Diff:
    """Parse SEARCH/REPLACE blocks and the optional envelope out of `text`.

    `name` is the diff's name when the text has no `<NAME>`. Raises `DiffError` for a
    marker out of sequence, an unterminated block, or a text without any block.
    """
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    lines, _ = _split(text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n"))
    blocks: list[DiffBlock] = []
    prose: list[str] = []
    sections: list[list[str]] = []  # the open block's SEARCH and REPLACE lines
    expect, opened = "search", 0  # expecting a SEARCH marker means no block is open
    for number, line in enumerate(lines, 1):
        kind = next((k for k, pattern in _MARKERS.items() if pattern.match(line)), None)
        if kind is None:
            (prose if expect == "search" else sections[-1]).append(line)
            continue
        if kind != expect:
            inside = "" if expect == "search" else (
                f" (inside block {len(blocks) + 1}, opened at line {opened})"
            )
            raise DiffError(
                f"Line {number} of the diff has '{_SHOWN[kind]}' where '{_SHOWN[expect]}' was "
                f"expected{inside}; every block must run '<<<<<<< SEARCH', '=======', "
                "'>>>>>>> REPLACE' in that order."
            )
        if kind == "search":
            sections, opened = [[]], number
        elif kind == "divider":
            sections.append([])
        else:
            blocks.append(DiffBlock(_joined(sections[0]), _joined(sections[1]), opened))
        expect = _NEXT[kind]
    if expect != "search":
        raise DiffError(
            f"Block {len(blocks) + 1}, opened at line {opened} of the diff, is unterminated: the "
            f"diff ends at line {len(lines)} before its '{_SHOWN[expect]}'."
        )
    if not blocks:
        raise DiffError(
            f"The diff {name!r} contains no SEARCH/REPLACE block; write each change as "
            "'<<<<<<< SEARCH', the parent's lines, '=======', the new lines, '>>>>>>> REPLACE'."
        )
    envelope = "\n".join(prose)
    return Diff(
        name=" ".join(_tag(envelope, "NAME").split()) or name,
        description=_tag(envelope, "DESCRIPTION"),
        blocks=tuple(blocks),
        hash=digest,
    )


def apply_diff(parent_source: str, diff: Diff) -> AppliedDiff:
    """Apply every block of `diff` to `parent_source`, in order, or raise `DiffError`.

    A SEARCH must match whole lines exactly once; when it matches nowhere exactly, a match
    that ignores trailing whitespace is accepted and noted. Where the parent marks
    EVOLVE-BLOCK regions, only lines inside them may change. A parent that compiles must
    give a child that compiles.
    """
    notes: list[str] = []
    if "\r\n" in parent_source:
        parent_source = parent_source.replace("\r\n", "\n")
        notes.append("The parent's CRLF line ends became LF in the child.")
    lines, final_newline = _split(parent_source)
    guarded = bool(_evolve_regions(lines))
    for number, block in enumerate(diff.blocks, 1):
        if not block.search.strip():
            raise DiffError(
                f"Block {number} (diff line {block.line}) has an empty SEARCH; quote the parent "
                "lines to change (to insert, quote a neighbouring line and repeat it in REPLACE)."
            )
        label, where = _label(number, block), _where(number)
        want, _ = _split(block.search)
        matches = _find(lines, want, str)
        if not matches:
            matches = _find(lines, want, str.rstrip)
            if matches:
                notes.append(
                    f"{label} matched {where} at line {matches[0] + 1} only with trailing "
                    "whitespace ignored."
                )
        if not matches:
            raise DiffError(_not_found(label, where, lines, want))
        if guarded:
            regions = _evolve_regions(lines)
            inside = [i for i in matches if any(s <= i and i + len(want) <= e for s, e in regions)]
            if not inside:
                raise DiffError(
                    f"{label} edits {_span(matches[0], len(want))} of {where}, outside the "
                    f"EVOLVE-BLOCK regions ({', '.join(_span(s, e - s) for s, e in regions)}); "
                    "only lines between EVOLVE-BLOCK-START and EVOLVE-BLOCK-END may change."
                )
            if "EVOLVE-BLOCK-" in block.replace:
                raise DiffError(
                    f"{label} adds an EVOLVE-BLOCK marker in its REPLACE; the parent's markers "
                    "must stay as they are."
                )
            matches = inside
        if len(matches) > 1:
            starts = [str(i + 1) for i in matches]
            raise DiffError(
                f"{label} matches {where} {len(matches)} times, at lines "
                f"{', '.join(starts[:-1])} and {starts[-1]}; add neighbouring lines to the "
                "SEARCH so that it matches exactly once."
            )
        if block.search == block.replace:
            notes.append(f"{label} changes nothing: its REPLACE equals its SEARCH.")
        lines[matches[0] : matches[0] + len(want)] = _split(block.replace)[0]
    child = "\n".join(lines) + ("\n" if final_newline else "")
    # "No longer": a parent that did not compile either is not the diff's fault.
    if (error := _syntax_error(child)) is not None and _syntax_error(parent_source) is None:
        at = f" at line {error.lineno}" if error.lineno else ""
        text = f": {error.text.strip()!r}" if error.text and error.text.strip() else ""
        raise DiffError(f"The child no longer compiles: {error.msg}{at}{text}.")
    return AppliedDiff(source=child, notes=tuple(notes))


def read_diff(path: Path) -> Diff:
    """Read and parse the diff file at `path`, named after the file's stem unless it has <NAME>."""
    return parse_diff(_read_text(path, "diff"), name=path.stem)


def apply_diff_file(parent_path: Path, diff_path: Path, out_path: Path) -> AppliedDiff:
    """Apply the diff file to the parent program file and write the child to `out_path`.

    The child is written atomically and only when every block applies, so a refused diff
    leaves `out_path` as it was. Refuses an `out_path` that is the parent or the diff.
    """
    for role, path in (("parent", parent_path), ("diff", diff_path)):
        if out_path.resolve() == path.resolve():
            raise HarnessError(
                f"The output {out_path} is the {role} itself; write the child to another path."
            )
    diff = read_diff(diff_path)
    applied = apply_diff(_read_text(parent_path, "parent"), diff)
    _write_atomically(out_path, applied.source)
    return applied


def _joined(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _tag(text: str, tag: str) -> str:
    found = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return found.group(1).strip() if found else ""


def _split(text: str) -> tuple[list[str], bool]:
    """Lines without their newlines, and whether the text ended with one.

    Splitting on "\\n" alone (not str.splitlines) keeps form feeds and other exotic line
    breaks, which Python source may contain, inside their lines.
    """
    lines = text.split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    return lines, final_newline


def _find(lines: list[str], want: list[str], key: Callable[[str], str]) -> list[int]:
    """Start indices of every (possibly overlapping) run of `lines` equal to `want` under `key`."""
    keyed, wanted = [key(line) for line in lines], [key(line) for line in want]
    n = len(wanted)
    return [
        i
        for i in range(len(keyed) - n + 1)
        if keyed[i] == wanted[0] and keyed[i : i + n] == wanted
    ]


def _evolve_regions(lines: list[str]) -> list[tuple[int, int]]:
    """The editable [start, end) line ranges between EVOLVE-BLOCK markers.

    An unclosed region runs to the end of the text rather than refusing the parent.
    """
    regions: list[tuple[int, int]] = []
    start: int | None = None
    for i, line in enumerate(lines):
        if start is None and _EVOLVE_START.search(line):
            start = i + 1
        elif start is not None and _EVOLVE_END.search(line):
            regions.append((start, i))
            start = None
    if start is not None:
        regions.append((start, len(lines)))
    return regions


def _label(number: int, block: DiffBlock) -> str:
    first = next((line.strip() for line in block.search.splitlines() if line.strip()), "")
    if len(first) > 60:
        first = first[:57] + "..."
    return f'Block {number} (diff line {block.line}, SEARCH "{first}")'


def _where(number: int) -> str:
    """Which text a block's line numbers refer to: earlier blocks may have shifted them."""
    if number == 1:
        return "the parent"
    earlier = "block 1" if number == 2 else f"blocks 1-{number - 1}"
    return f"the parent as {earlier} left it"


def _span(start: int, count: int) -> str:
    return f"line {start + 1}" if count == 1 else f"lines {start + 1}-{start + count}"


def _not_found(label: str, where: str, lines: list[str], want: list[str]) -> str:
    """The refusal for a SEARCH that matches nowhere, with the closest region of the parent.

    Windows are ranked by line-level similarity with indentation ignored, which is fast on
    long blocks (character-level difflib takes seconds) and still finds a region quoted with
    the wrong indentation, a common LLM slip; ties, frequent on short blocks, go to the
    window sharing the most characters with the SEARCH.
    """
    if not lines:
        return f"{label} was not found in {where}, which is empty."
    n = min(len(want), len(lines))
    stripped = [line.strip() for line in lines]
    by_line = difflib.SequenceMatcher(None, autojunk=False)
    by_line.set_seq2([line.strip() for line in want])
    chars, window = Counter("".join(want)), Counter("".join(lines[:n]))
    best, start = (-1.0, -1), 0
    for i in range(len(lines) - n + 1):
        if i:  # slide the window's character counts rather than recount them
            window.subtract(lines[i - 1])
            window.update(lines[i + n - 1])
        by_line.set_seq1(stripped[i : i + n])
        # The cheap upper bounds skip most windows before the costlier ratio().
        if by_line.real_quick_ratio() >= best[0] and by_line.quick_ratio() >= best[0]:
            if (score := (by_line.ratio(), sum((window & chars).values()))) > best:
                best, start = score, i
    region = [line.rstrip() for line in lines[start : start + n]]
    quoted = [line.rstrip() for line in want]
    hunks = difflib.SequenceMatcher(None, region, quoted, autojunk=False).get_opcodes()
    differ = min(next(i for tag, i, *_ in hunks if tag != "equal"), n - 1)
    # Similarity per line, character-level within the hunks that differ: a one-character
    # typo in a one-line SEARCH is then over 90% similar, not the line-level 0%.
    similarity = sum(
        i2 - i1 if tag == "equal" else sum(map(_line_ratio, region[i1:i2], quoted[j1:j2]))
        for tag, i1, i2, j1, j2 in hunks
    ) / len(want)
    # Floor, not round: "100% similar" for a region that does not match would mislead.
    alike = "equal but for indentation" if best[0] == 1 else f"{int(similarity * 100)}% similar"
    shown = range(start + max(0, differ - 2), min(start + n, start + differ + _EXCERPT_LINES - 2))
    excerpt = "".join(f"\n{i + 1:6d} | {lines[i]}" for i in shown)
    return (
        f"{label} was not found in {where}; the closest region is {_span(start, n)} "
        f"({alike}, first difference at line {start + differ + 1}):{excerpt}"
    )


def _line_ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _syntax_error(source: str) -> SyntaxError | None:
    # Warnings (invalid escapes and the like) are the child's business, not the diff stage's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(source, "<child>", "exec", dont_inherit=True)
        except SyntaxError as error:
            return error
    return None


def _read_text(path: Path, role: str) -> str:
    """The file's text, line ends untouched so that a diff's hash is that of its bytes."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise HarnessError(f"The {role} {path} does not exist.") from None
    except OSError as error:
        raise HarnessError(f"Cannot read the {role} {path}: {error.strerror}.") from None
    except UnicodeDecodeError as error:
        raise HarnessError(
            f"The {role} {path} is not UTF-8 text (invalid byte at offset {error.start})."
        ) from None


def _write_atomically(path: Path, text: str) -> None:
    try:
        write_atomically(path, text)
    except OSError as error:
        raise HarnessError(f"Cannot write the child {path}: {error.strerror}.") from None
