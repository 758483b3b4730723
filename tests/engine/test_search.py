"""The search language (SPEC section 12) as engine/core/search.py reads it: every term, and
errors that name the bad term instead of an empty result."""

from __future__ import annotations

import pytest

from engine.core.job import JobState
from engine.core.search import ArgsMatch, JobQuery, SearchError, parse_query


def test_every_qualifier_reads_into_its_field() -> None:
    query = parse_query('id:123 kind:mail queue:default state:discarded,retryable tag:billing node:web-1.7 '
                        'definition:nightly args.to:a@example.com error:"timed out" invoice')
    assert query.id == 123 and query.kind == "mail" and query.queue == "default"
    assert query.states == (JobState.DISCARDED, JobState.RETRYABLE)
    assert query.tags == ("billing",) and query.node == "web-1.7" and query.definition == "nightly"
    assert query.args == (ArgsMatch(("to",), "a@example.com"),)
    assert query.errors == ("timed out",) and query.words == ("invoice",)


def test_an_args_path_builds_the_containment_document() -> None:
    (nested,) = parse_query("args.data.userId:7").args
    assert nested.documents() == [{"data": {"userId": 7}}, {"data": {"userId": "7"}}]
    (quoted,) = parse_query('args.data.userId:"7"').args
    assert quoted.documents() == [{"data": {"userId": "7"}}]
    (flag,) = parse_query("args.dry_run:true").args
    assert flag.documents() == [{"dry_run": True}, {"dry_run": "true"}]
    (text,) = parse_query('args.subject:"a: b \\"c\\""').args
    assert text.documents() == [{"subject": 'a: b "c"'}]


def test_terms_combine_with_and() -> None:
    assert parse_query("tag:a tag:b").tags == ("a", "b")
    assert parse_query("state:discarded,retryable state:retryable,completed").states == (JobState.RETRYABLE,)
    assert parse_query("kind:mail kind:mail").kind == "mail"
    assert parse_query("").empty and parse_query("   ").empty
    assert parse_query('"https://example.com/a b"').words == ("https://example.com/a b",)


def test_a_lone_id_names_one_job() -> None:
    assert parse_query("id:42").job_id == 42
    assert parse_query("id:42 kind:mail").job_id is None


def test_scanned_terms_are_the_ones_no_index_answers() -> None:
    assert not parse_query("id:1 kind:k queue:q state:completed args.a:1").scanned
    # A tag is checked on the newest tagged jobs (jobs_tagged_listing_idx, migration 012).
    for term in ("word", 'error:"x"', "node:n", "definition:d", "tag:t"):
        assert parse_query(term).scanned, term


@pytest.mark.parametrize(("text", "names"), [
    ("kind:", "kind:"),
    ("colour:red", "unknown qualifier 'colour'"),
    ("stat:completed", "did you mean state:?"),
    ("state:done", "unknown state 'done'"),
    ("id:abc", "id:abc"),
    ("id:0", "id must be a positive integer"),
    ('error:"timed out', "never closed"),
    ("args.:x", "args needs a path"),
    ("args..a:x", "args.."),
    (":mail", "qualifier goes before the colon"),
    ("https://example.com", "unknown qualifier 'https'; use one of id, kind"),
    ('kind:"a"b', "space after the closing quote"),
    ('ki"nd', "a quote may only open a value"),
    ("kind:a kind:b", "given twice"),
    ("state:completed state:discarded", "at once"),
    ("x" * 501, "at most 500 characters"),
    (" ".join(["w"] * 21), "at most 20 terms"),
])
def test_a_malformed_query_names_the_term(text: str, names: str) -> None:
    with pytest.raises(SearchError, match=None) as raised:
        parse_query(text)
    assert names in str(raised.value), str(raised.value)


def test_form_filters_must_agree_with_the_query() -> None:
    query = parse_query("state:discarded,retryable kind:mail")
    assert query.merged(states=(JobState.RETRYABLE,)).states == (JobState.RETRYABLE,)
    assert query.merged(tags=("x",), kind="mail").tags == ("x",)
    with pytest.raises(SearchError, match="the filter says 'http' but the query says 'mail'"):
        query.merged(kind="http")
    with pytest.raises(SearchError, match="no job is in one of"):
        query.merged(states=(JobState.COMPLETED,))
    assert JobQuery().merged(queue=None) == JobQuery()
