"""The SEARCH/REPLACE diff stage: tolerant parsing, strict applying, actionable refusals."""

import hashlib
import os
import re
from pathlib import Path

import pytest

from harness.diffs import AppliedDiff, Diff, DiffBlock, DiffError, apply_diff, apply_diff_file, parse_diff, read_diff
from harness.errors import HarnessError

SEED = Path("/work/shared/seeds/000_563cac511b833974.txt")

PARENT = """\
import math


def area(r):
    return math.pi * r * r


def scale(x):
    return x * 2


def shift(x):
    return x + 1
"""


def block(search: str, replace: str) -> str:
    """One SEARCH/REPLACE block as an LLM writes it."""
    return f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def applied(parent: str, diff_text: str) -> AppliedDiff:
    return apply_diff(parent, parse_diff(diff_text))


def refusal(parent: str, diff_text: str) -> str:
    """The message of the DiffError that applying `diff_text` to `parent` raises."""
    with pytest.raises(DiffError) as caught:
        applied(parent, diff_text)
    return str(caught.value)


def parse_refusal(diff_text: str) -> str:
    with pytest.raises(DiffError) as caught:
        parse_diff(diff_text)
    return str(caught.value)


def starting(text: str) -> str:
    """A `pytest.raises(match=...)` pattern for a message that starts with `text`."""
    return "^" + re.escape(text)


# --- parsing ---------------------------------------------------------------------------


def test_single_block_without_envelope_takes_the_given_name():
    text = block("def scale(x):\n    return x * 2\n", "def scale(x):\n    return x * 3\n")
    assert parse_diff(text, name="my_change") == Diff(
        name="my_change",
        description="",
        blocks=(
            DiffBlock("def scale(x):\n    return x * 2\n", "def scale(x):\n    return x * 3\n", 1),
        ),
        hash=hashlib.sha256(text.encode()).hexdigest()[:16],
    )
    assert parse_diff(text).name == "diff"


def test_dataclasses_are_frozen_and_the_error_is_a_harness_error():
    assert issubclass(DiffError, HarnessError)
    diff = parse_diff(block("a\n", "b\n"))
    with pytest.raises(AttributeError):
        diff.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        diff.blocks[0].line = 3  # type: ignore[misc]


def test_blocks_amid_prose_and_code_fences_keep_their_diff_line_numbers():
    text = (
        "Here is my change; it doubles less.\n"
        "```python\n"
        + block("    return x * 2\n", "    return x * 3\n")
        + "```\n"
        "And a second one, outside any fence:\n"
        + block("    return x + 1\n", "    return x + 2\n")
        + "Hope this helps!\n"
    )
    diff = parse_diff(text)
    assert [b.line for b in diff.blocks] == [3, 10]
    assert [b.search for b in diff.blocks] == ["    return x * 2\n", "    return x + 1\n"]
    child = applied(PARENT, text).source
    assert child == PARENT.replace("x * 2", "x * 3").replace("x + 1", "x + 2")


def test_crlf_line_ends_and_stray_spaces_after_markers():
    text = (
        "<<<<<<< SEARCH  \r\n    return x * 2\r\n=======\t\r\n"
        "    return x * 3\r\n>>>>>>> REPLACE   \r\n"
    )
    diff = parse_diff(text)
    assert diff.blocks == (DiffBlock("    return x * 2\n", "    return x * 3\n", 1),)
    assert diff.hash == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert apply_diff(PARENT, diff) == AppliedDiff(PARENT.replace("x * 2", "x * 3"), ())


def test_indented_marker_is_content_not_a_marker():
    diff = parse_diff(block('    """Title\n    =======\n', '    """Title\n    -------\n'))
    assert diff.blocks[0].search == '    """Title\n    =======\n'


def test_empty_replace_deletes_the_lines():
    result = applied(PARENT, block("def shift(x):\n    return x + 1\n", ""))
    assert result.source == PARENT.replace("def shift(x):\n    return x + 1\n", "")


def test_envelope_gives_name_and_description():
    text = (
        "<NAME>\n  triple  scale\n</NAME>\n\n"
        "<DESCRIPTION>\nTriples instead of doubling.\n</DESCRIPTION>\n\n"
        "<DIFF>\n" + block("    return x * 2\n", "    return x * 3\n") + "</DIFF>\n"
    )
    diff = parse_diff(text, name="fallback")
    assert (diff.name, diff.description) == ("triple scale", "Triples instead of doubling.")
    assert diff.blocks[0].line == 10


def test_real_seed_envelope():
    if not SEED.exists():
        pytest.skip(f"{SEED} is not present")
    diff = read_diff(SEED)
    assert diff.name == "peak_aware_tail_and_two_step_fixup"
    assert diff.description.startswith("This edit improves the expert replication stage")
    assert diff.description.endswith("introducing large computational overheads.")
    assert len(diff.blocks) == 1
    assert diff.blocks[0].line == 16
    assert diff.blocks[0].search.startswith("def replicate_experts(\n")
    assert diff.blocks[0].replace.endswith("    return phy2log, rank, logcnt\n")
    assert diff.hash == hashlib.sha256(SEED.read_bytes()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "prose\n=======\nmore\n",
            "Line 2 of the diff has '=======' where '<<<<<<< SEARCH' was expected;",
        ),
        (
            "x\n>>>>>>> REPLACE\n",
            "Line 2 of the diff has '>>>>>>> REPLACE' where '<<<<<<< SEARCH' was expected;",
        ),
        (
            block("a\n", "b\n") + "<<<<<<< SEARCH\nc\n>>>>>>> REPLACE\n",
            "Line 8 of the diff has '>>>>>>> REPLACE' where '=======' was expected "
            "(inside block 2, opened at line 6);",
        ),
        (
            "<<<<<<< SEARCH\na\n<<<<<<< SEARCH\n",
            "Line 3 of the diff has '<<<<<<< SEARCH' where '=======' was expected "
            "(inside block 1, opened at line 1);",
        ),
        (
            "<<<<<<< SEARCH\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE\n",
            "Line 5 of the diff has '=======' where '>>>>>>> REPLACE' was expected "
            "(inside block 1, opened at line 1);",
        ),
    ],
)
def test_marker_out_of_sequence_names_the_diff_line(text, expected):
    message = parse_refusal(text)
    assert message.startswith(expected)
    assert message.endswith(
        "every block must run '<<<<<<< SEARCH', '=======', '>>>>>>> REPLACE' in that order."
    )
    assert "\n" not in message


def test_unterminated_block_names_its_line():
    message = parse_refusal(block("a\n", "b\n") + "prose\n<<<<<<< SEARCH\nc\n=======\nd\n")
    assert message == (
        "Block 2, opened at line 7 of the diff, is unterminated: the diff ends at line 10 "
        "before its '>>>>>>> REPLACE'."
    )
    assert parse_refusal("<<<<<<< SEARCH\nc").endswith("before its '======='.")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Sorry, I cannot help with that.\n",
        "<NAME>x</NAME>\n<DESCRIPTION>y</DESCRIPTION>\n<DIFF>\n</DIFF>\n",
    ],
)
def test_text_without_blocks_is_refused(text):
    assert parse_refusal(text) == (
        "The diff 'diff' contains no SEARCH/REPLACE block; write each change as "
        "'<<<<<<< SEARCH', the parent's lines, '=======', the new lines, '>>>>>>> REPLACE'."
    )


# --- applying --------------------------------------------------------------------------


def test_blocks_apply_in_order_each_to_what_the_previous_left():
    text = block("    return x * 2\n", "    return x * 2 + 7\n") + block(
        "    return x * 2 + 7\n", "    return x * 2 + 8\n"
    )
    assert applied(PARENT, text) == AppliedDiff(PARENT.replace("x * 2", "x * 2 + 8"), ())


def test_trailing_whitespace_is_tolerated_and_noted():
    parent = PARENT.replace("return x * 2\n", "return x * 2   \n")
    scale = "def scale(x):\n    return x * 2\n"
    result = applied(parent, block(scale, "def scale(x):\n    return x * 3\n"))
    assert result.source == PARENT.replace("x * 2", "x * 3")
    assert result.notes == (
        'Block 1 (diff line 1, SEARCH "def scale(x):") matched the parent at line 8 only '
        "with trailing whitespace ignored.",
    )
    # The other way round, in a later block: the LLM added trailing spaces.
    spaced = scale.replace("\n", " \n")
    text = block("import math\n", "import math  # circles\n") + block(spaced, "")
    result = applied(PARENT, text)
    assert "def scale" not in result.source
    assert result.notes == (
        'Block 2 (diff line 6, SEARCH "def scale(x):") matched the parent as block 1 left it '
        "at line 8 only with trailing whitespace ignored.",
    )


def test_parent_crlf_final_newline_and_form_feeds():
    result = applied("a = 1\r\n\x0c\r\nb = 2", block("b = 2\n", "b = 3\n"))
    assert result.source == "a = 1\n\x0c\nb = 3"
    assert result.notes == ("The parent's CRLF line ends became LF in the child.",)


def test_noop_block_is_noted():
    result = applied(PARENT, block("    return x + 1\n", "    return x + 1\n"))
    assert result.source == PARENT
    assert result.notes == (
        'Block 1 (diff line 1, SEARCH "return x + 1") changes nothing: its REPLACE equals its '
        "SEARCH.",
    )


def test_search_not_found_shows_the_closest_region():
    text = block("x = 0\n", "x = 1\n") + block(
        "def scale(x):\n    return x * 20\n", "def scale(x):\n    return x * 3\n"
    )
    first, *excerpt = refusal("x = 0\n" + PARENT, text).split("\n")
    assert first == (
        'Block 2 (diff line 6, SEARCH "def scale(x):") was not found in the parent as '
        "block 1 left it; the closest region is lines 9-10 (98% similar, first difference "
        "at line 10):"
    )
    assert excerpt == ["     9 | def scale(x):", "    10 |     return x * 2"]


def test_search_not_found_picks_the_most_similar_single_line():
    message = refusal(PARENT, block("    retrun x + 1\n", "    return x\n"))
    assert message == (
        'Block 1 (diff line 1, SEARCH "retrun x + 1") was not found in the parent; the '
        "closest region is line 13 (93% similar, first difference at line 13):\n"
        "    13 |     return x + 1"
    )


def test_search_not_found_with_wrong_indentation_says_so():
    message = refusal(PARENT, block("return x * 2\n", "return x * 3\n"))
    assert message.startswith(
        'Block 1 (diff line 1, SEARCH "return x * 2") was not found in the parent; the '
        "closest region is line 9 (equal but for indentation, first difference at line 9):\n"
    )


def test_search_not_found_excerpt_is_short_and_starts_near_the_difference():
    parent = "".join(f"v{i} = {i}\n" for i in range(1, 41))
    search = "".join(f"v{i} = {i}\n" for i in range(11, 31)).replace("v20 = 20", "v20 = 200")
    first, *excerpt = refusal(parent, block(search, "pass\n")).split("\n")
    assert first.endswith(
        "the closest region is lines 11-30 (99% similar, first difference at line 20):"
    )
    assert excerpt == [f"{i:6d} | v{i} = {i}" for i in range(18, 26)]


def test_search_not_found_in_an_empty_parent():
    assert refusal("", block("a\n", "b\n")) == (
        'Block 1 (diff line 1, SEARCH "a") was not found in the parent, which is empty.'
    )


def test_ambiguous_search_lists_every_match():
    parent = "def f(x):\n    return x\n\n\ndef g(x):\n    return x\n\n\ndef h(x):\n    return x\n"
    message = refusal(parent, "Some prose.\n" + block("    return x\n", "    return -x\n"))
    assert message == (
        'Block 1 (diff line 2, SEARCH "return x") matches the parent 3 times, at lines 2, 6 '
        "and 10; add neighbouring lines to the SEARCH so that it matches exactly once."
    )


def test_long_first_line_is_shortened_in_the_label():
    long_line = "x = " + " + ".join(["1"] * 40) + "\n"
    message = refusal(long_line * 2, block(long_line, "x = 0\n"))
    assert message.startswith(f'Block 1 (diff line 1, SEARCH "{long_line[:57]}...") matches')


def test_empty_search_is_refused():
    text = block("x = 1\n", "x = 2\n") + "<<<<<<< SEARCH\n   \n=======\ny = 1\n>>>>>>> REPLACE\n"
    assert refusal("x = 1\n", text) == (
        "Block 2 (diff line 6) has an empty SEARCH; quote the parent lines to change (to "
        "insert, quote a neighbouring line and repeat it in REPLACE)."
    )


def test_child_that_no_longer_compiles_is_refused():
    message = refusal(PARENT, block("    return x * 2\n", "    return (x * 2\n"))
    assert message == (
        "The child no longer compiles: '(' was never closed at line 9: 'return (x * 2'."
    )


def test_parent_that_did_not_compile_does_not_block_the_diff():
    parent = "def broken(:\n    pass\nx = 1\n"
    assert applied(parent, block("x = 1\n", "x = 2\n")).source == parent.replace("x = 1", "x = 2")


def test_all_or_nothing():
    text = block("    return x * 2\n", "    return x * 3\n") + block("missing line\n", "y\n")
    with pytest.raises(DiffError, match=starting('Block 2 (diff line 6, SEARCH "missing line")')):
        applied(PARENT, text)


# --- EVOLVE-BLOCK regions --------------------------------------------------------------

GUARDED = """\
import math


def fixed(x):
    return x + 1


# EVOLVE-BLOCK-START
def evolving(x):
    return x + 1
# EVOLVE-BLOCK-END
"""


def test_edit_inside_evolve_block_is_accepted():
    text = block("def evolving(x):\n    return x + 1\n", "def evolving(x):\n    return x + 5\n")
    child = applied(GUARDED, text).source
    assert child == GUARDED.replace("return x + 1\n# EVOLVE", "return x + 5\n# EVOLVE")


def test_edit_outside_evolve_block_is_refused():
    text = block("def fixed(x):\n    return x + 1\n", "def fixed(x):\n    return 0\n")
    assert refusal(GUARDED, text) == (
        'Block 1 (diff line 1, SEARCH "def fixed(x):") edits lines 4-5 of the parent, outside '
        "the EVOLVE-BLOCK regions (lines 9-10); only lines between EVOLVE-BLOCK-START and "
        "EVOLVE-BLOCK-END may change."
    )


def test_evolve_markers_themselves_cannot_be_edited():
    message = refusal(GUARDED, block("# EVOLVE-BLOCK-END\n", ""))
    assert "edits line 11 of the parent, outside the EVOLVE-BLOCK regions" in message
    message = refusal(GUARDED, block("    return x + 1\n# EVOLVE-BLOCK-END\n", "    return x\n"))
    assert "edits lines 10-11 of the parent" in message


def test_match_outside_the_evolve_block_does_not_make_an_inside_match_ambiguous():
    child = applied(GUARDED, block("    return x + 1\n", "    return x - 1\n")).source
    assert child == GUARDED.replace("return x + 1\n# EVOLVE", "return x - 1\n# EVOLVE")


def test_replace_cannot_add_evolve_markers():
    replace = "    return x\n# EVOLVE-BLOCK-END\n# EVOLVE-BLOCK-START\n"
    assert refusal(GUARDED, block("    return x + 1\n", replace)) == (
        'Block 1 (diff line 1, SEARCH "return x + 1") adds an EVOLVE-BLOCK marker in its '
        "REPLACE; the parent's markers must stay as they are."
    )


# --- files -----------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    parent = tmp_path / "parent.py"
    parent.write_text(PARENT)
    diff = tmp_path / "triple.txt"
    diff.write_text(block("    return x * 2\n", "    return x * 3\n"))
    return parent, diff, tmp_path / "child.py"


def test_apply_diff_file_writes_the_child(files):
    parent, diff, out = files
    result = apply_diff_file(parent, diff, out)
    assert out.read_text() == result.source == PARENT.replace("x * 2", "x * 3")
    assert sorted(p.name for p in out.parent.iterdir()) == ["child.py", "parent.py", "triple.txt"]
    assert out.stat().st_mode & 0o777 == 0o644


def test_read_diff_names_after_the_stem_and_hashes_the_bytes(files):
    _, diff, _ = files
    diff.write_bytes(diff.read_bytes().replace(b"\n", b"\r\n"))
    parsed = read_diff(diff)
    assert parsed.name == "triple"
    assert parsed.hash == hashlib.sha256(diff.read_bytes()).hexdigest()[:16]


def test_apply_diff_file_writes_nothing_on_failure(files):
    parent, diff, out = files
    diff.write_text(block("    return x * 2\n", "    return x * 3\n") + block("nowhere\n", "x\n"))
    with pytest.raises(DiffError, match="^Block 2"):
        apply_diff_file(parent, diff, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["parent.py", "triple.txt"]
    out.write_text("previous child\n")
    with pytest.raises(DiffError, match="^Block 2"):
        apply_diff_file(parent, diff, out)
    assert out.read_text() == "previous child\n"
    assert parent.read_text() == PARENT
    assert sorted(p.name for p in out.parent.iterdir()) == ["child.py", "parent.py", "triple.txt"]


def test_apply_diff_file_refuses_to_overwrite_its_inputs(files):
    parent, diff, _ = files
    with pytest.raises(HarnessError, match=starting(f"The output {parent} is the parent itself;")):
        apply_diff_file(parent, diff, parent)
    same_diff = diff.parent / "." / diff.name
    with pytest.raises(HarnessError, match=starting(f"The output {same_diff} is the diff itself;")):
        apply_diff_file(parent, diff, same_diff)
    assert parent.read_text() == PARENT
    assert diff.read_text() == block("    return x * 2\n", "    return x * 3\n")


def test_bad_files_are_named(files, tmp_path):
    parent, diff, out = files
    missing = tmp_path / "missing.txt"
    with pytest.raises(HarnessError, match=starting(f"The diff {missing} does not exist.")):
        read_diff(missing)
    with pytest.raises(HarnessError, match=starting(f"The parent {missing} does not exist.")):
        apply_diff_file(missing, diff, out)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9\n")
    not_utf8 = f"The diff {latin} is not UTF-8 text (invalid byte at offset 3)."
    with pytest.raises(HarnessError, match=starting(not_utf8)):
        read_diff(latin)
    is_dir = f"Cannot read the diff {tmp_path}: Is a directory."
    with pytest.raises(HarnessError, match=starting(is_dir)):
        read_diff(tmp_path)
    absent = tmp_path / "absent" / "child.py"
    with pytest.raises(
        HarnessError, match=starting(f"Cannot write the child {absent}: No such file or directory.")
    ):
        apply_diff_file(parent, diff, absent)
    assert not out.exists()
    if os.geteuid() != 0:  # root reads anything
        parent.chmod(0)
        with pytest.raises(HarnessError, match=starting(f"Cannot read the parent {parent}:")):
            apply_diff_file(parent, diff, out)
