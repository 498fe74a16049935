"""The list cache keeps one body per query: a busy collection does not fill memory with the
bodies of revisions that can never be asked for again."""

from __future__ import annotations

from orchestrator.http.lists import CachedList, ListCache


def _entry(size: int) -> CachedList:
    return CachedList(body=b"x" * size, etag='"e"', link=None)


def test_a_newer_revision_replaces_the_older_body_of_the_same_query() -> None:
    cache = ListCache()
    query = ("tasks", None, None)
    for revision in range(1, 1001):
        assert cache.get(query, revision) is None
        cache.put(query, revision, _entry(10_000))
        assert cache.get(query, revision) is not None
    assert len(cache) == 1
    assert cache.bytes == 10_000
    assert cache.get(query, 999) is None


def test_a_late_put_of_an_older_revision_keeps_the_newer_body() -> None:
    cache = ListCache()
    query = ("jobs", 50, None)
    newer = _entry(20)
    cache.put(query, 7, newer)
    cache.put(query, 6, _entry(10))
    assert cache.get(query, 7) is newer
    assert cache.get(query, 6) is None


def test_distinct_queries_are_bounded_by_count_and_bytes() -> None:
    cache = ListCache(max_entries=3, max_bytes=1_000)
    for n in range(10):
        cache.put(("tasks", n, None), 1, _entry(100))
    assert len(cache) == 3
    assert cache.get(("tasks", 9, None), 1) is not None
    assert cache.get(("tasks", 0, None), 1) is None
    cache.put(("tasks", 10, None), 1, _entry(900))
    assert cache.bytes <= 1_000
