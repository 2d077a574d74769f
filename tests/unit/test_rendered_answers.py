"""The API's rendered answers: kept by tag, least recently used dropped past the bound."""

from __future__ import annotations

from nas.api.rendered import Rendered, RenderedAnswers


def answer(size: int, fill: bytes = b"x") -> Rendered:
    return Rendered(fill * size, "application/json")


def test_an_answer_is_kept_under_its_tag() -> None:
    answers = RenderedAnswers(max_bytes=1000)
    answers.put("a", answer(10))

    assert answers.get("a") == answer(10)
    assert answers.get("b") is None


def test_the_least_recently_used_goes_first_past_the_bound() -> None:
    answers = RenderedAnswers(max_bytes=600)
    for tag in "abc":
        answers.put(tag, answer(150))
    assert answers.get("a") is not None  # now b is the least recently used

    answers.put("d", answer(150))
    answers.put("e", answer(150))

    assert [tag for tag in "abcde" if answers.get(tag) is not None] == ["a", "c", "d", "e"]
    assert answers.size_bytes == 600


def test_replacing_an_answer_counts_its_bytes_once() -> None:
    answers = RenderedAnswers(max_bytes=1000)
    answers.put("a", answer(200))
    answers.put("a", answer(100, b"y"))

    assert answers.size_bytes == 100
    assert answers.get("a") == answer(100, b"y")


def test_an_answer_past_a_quarter_of_the_bound_is_not_kept() -> None:
    answers = RenderedAnswers(max_bytes=1000)
    answers.put("big", answer(251))

    assert answers.get("big") is None
    assert answers.size_bytes == 0


def test_no_bytes_keeps_nothing() -> None:
    answers = RenderedAnswers(max_bytes=0)
    answers.put("a", answer(1))

    assert answers.get("a") is None


def test_the_response_carries_the_validators_and_its_own_headers() -> None:
    rendered = Rendered(b"a,b\n", "text/csv; charset=utf-8", {"Content-Disposition": "x"})

    response = rendered.response({"ETag": 'W/"1"', "Cache-Control": "private, no-cache"})

    assert response.body == b"a,b\n"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["content-disposition"] == "x"
    assert response.media_type == "text/csv; charset=utf-8"
