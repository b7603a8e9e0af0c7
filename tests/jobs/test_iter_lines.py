"""iter_lines: numbered raw lines streamed from storage, with long lines cut off, across any chunking."""
import random
import tracemalloc

import pytest

from deltallm.jobs import files


class ChunkStore:
    """A storage backend serving fixed content in chunks of a chosen size (iter_lines reads through it)."""

    name = "memory"

    def __init__(self, content, size):
        self.content, self.size = content, size

    def read(self, key):
        return (self.content[i:i + self.size] for i in range(0, len(self.content), self.size))


class Row:
    id, storage = "file-x", "memory"


def lines(content, max_line_bytes, chunk=3):
    return list(files.iter_lines(ChunkStore(content, chunk), Row(), max_line_bytes))


def reference(content, max_line_bytes):
    """What iter_lines must give, computed the obvious (whole-file) way."""
    parts = content.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    out = []
    for n, part in enumerate(parts, 1):
        part = part[:-1] if part.endswith(b"\r") else part
        out.append((n, part if len(part) <= max_line_bytes else None))
    return out


@pytest.mark.parametrize("content, expected", [
    (b"", []),
    (b"a\nb\n", [(1, b"a"), (2, b"b")]),
    (b"a\nb", [(1, b"a"), (2, b"b")]),                        # a last line without its newline
    (b"\n\nx\n", [(1, b""), (2, b""), (3, b"x")]),            # blank lines are lines
    (b"a\r\nb\r\n", [(1, b"a"), (2, b"b")]),                  # CRLF files
    (b"12345\n123456\n1\n", [(1, b"12345"), (2, None), (3, b"1")]),
    (b"1\n" + b"x" * 40 + b"\n2", [(1, b"1"), (2, None), (3, b"2")]),
    (b"1\n" + b"x" * 40, [(1, b"1"), (2, None)]),             # a long last line without a newline
    (b"12345\r\n", [(1, b"12345")]),                          # the \r is not counted against the limit
])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_lines(content, expected, chunk):
    assert lines(content, 5, chunk) == expected


def test_matches_the_whole_file_reading_for_random_files():
    rng = random.Random(1234)
    for _ in range(400):
        content = bytes(rng.choice(b"ab\n\r") for _ in range(rng.randrange(60)))
        limit, chunk = rng.randrange(0, 8), rng.randrange(1, 9)
        assert lines(content, limit, chunk) == reference(content, limit), (content, limit, chunk)


def test_a_huge_line_is_never_held_in_memory():
    class Endless:
        name = "memory"

        def read(self, key):
            yield b'{"custom_id": "1"}\n'
            for _ in range(64):            # one 64 MiB line, sent a MiB at a time
                yield b"x" * (1024 * 1024)
            yield b'\n{"custom_id": "3"}\n'
    tracemalloc.start()
    try:
        got = list(files.iter_lines(Endless(), Row(), 1000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [(1, b'{"custom_id": "1"}'), (2, None), (3, b'{"custom_id": "3"}')]
    assert peak < 8 * 1024 * 1024
