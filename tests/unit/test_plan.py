"""The restore plan on disk: pages, hard links, completion counting."""

from __future__ import annotations

from peerbak.adapters.ledger import RestorePlanDb


def test_packs_files_links_and_completion_across_pages() -> None:
    plan = RestorePlanDb()
    try:
        ids = [plan.add_file(f"/t/f{i}".encode(), b"e", 2, None) for i in range(2500)]
        assert None not in ids
        first = plan.add_file(b"/t/a", b"e", 1, (1, 42))
        again = plan.add_file(b"/t/b", b"e", 1, (1, 42))
        assert first is not None
        assert again is None  # another name of the same inode
        plan.add_targets(
            [
                (bytes([i % 7]) * 32, bytes([i % 251]) * 32, ident, 0)
                for i, ident in enumerate(ids)
                if ident is not None
            ]
        )
        plan.add_targets([(bytes([9]) * 32, b"c" * 32, first, 0)])
        for depth in (3, 1, 2):
            plan.add_dir(f"/d{depth}".encode(), depth, b"e")
        plan.planned()
        packs = list(plan.packs())
        assert packs == sorted({bytes([i % 7]) * 32 for i in range(2500)} | {bytes([9]) * 32})
        targets, paths = plan.targets(bytes([9]) * 32)
        assert targets == [(b"c" * 32, first, 0)]
        assert paths == {first: b"/t/a"}
        assert plan.links(first) == [b"/t/b"]
        assert list(plan.empty_files()) == []  # before writing: only files without chunks
        assert plan.written({first: 1}) == [(first, b"/t/a", b"e")]
        count, _ = plan.unfinished()
        assert count == 2500  # each needs 2 chunks
        assert [p for p, _ in plan.dirs(deepest_first=False)] == [b"/d1", b"/d2", b"/d3"]
        assert [p for p, _ in plan.dirs(deepest_first=True)] == [b"/d3", b"/d2", b"/d1"]
    finally:
        plan.close()
