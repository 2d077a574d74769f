"""A client of the service's HTTP API, for the ``nas`` client commands and scripts.

Every failure, from the server (4xx, 5xx) or on the way to it (refused, timed out), is a
:class:`ApiError` whose message says what went wrong in one line, with the server's own words.
A search and its leaderboard are revalidated: asked again, the client sends the ETag of its
last copy and reuses that copy on a 304, so polling an unchanged search costs the server little.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from nas.core.errors import NasError

DEFAULT_URL = "http://127.0.0.1:8000"


class ModelFormat(StrEnum):
    """The files a model is exported as."""

    SAVEDMODEL = "savedmodel"
    KERAS = "keras"

    @property
    def suffix(self) -> str:
        return "-savedmodel.tar.gz" if self is ModelFormat.SAVEDMODEL else ".keras"


class ApiError(NasError):
    """A request that did not succeed; ``status_code`` is None when no answer came."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class NasClient:
    """The API at ``url``, presenting ``token`` (``nas token create``) on every request."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        #: path -> (ETag, JSON) of the last answer of each revalidated path.
        self._copies: dict[str, tuple[str, Any]] = {}

    def __enter__(self) -> NasClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def healthy(self) -> bool:
        """Whether the service answers ``/healthz`` (its database included)."""
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue a search; returns it (``id``, ``status``, ``trials_planned``, ...)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/searches", json=spec, headers=headers)

    def searches(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """A page of the caller's searches, newest first (``items``, ``total``); pass a
        page's ``next_cursor`` (None on the last page) as ``cursor`` for the next one."""
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        return self._json("GET", "/v1/searches", params=params)

    def search(self, search_id: str) -> dict[str, Any]:
        """The search's status and progress."""
        return self._revalidated(f"/v1/searches/{search_id}")

    def leaderboard(self, search_id: str) -> dict[str, Any]:
        """Every trial of the search, ranked."""
        return self._revalidated(f"/v1/searches/{search_id}/leaderboard")

    def models(self, search_id: str) -> list[dict[str, Any]]:
        """The exported models of the search, best first."""
        return self._json("GET", f"/v1/searches/{search_id}/models")["models"]

    def cancel(self, search_id: str) -> dict[str, Any]:
        """Ask the search to stop; returns it."""
        return self._json("POST", f"/v1/searches/{search_id}/cancel")

    def extend(
        self,
        search_id: str,
        *,
        max_trials: int | None = None,
        seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Give a search that ended ``max_trials`` more trials and/or ``seconds`` more budget
        seconds; returns it, queued again."""
        body: dict[str, Any] = {} if max_trials is None else {"max_trials": max_trials}
        if seconds is not None:
            body["budget"] = {"seconds": seconds}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", f"/v1/searches/{search_id}/extend", json=body, headers=headers)

    def download(
        self, search_id: str, rank: int, model_format: ModelFormat, output: Path | None = None
    ) -> Path:
        """Stream an exported model to ``output`` (a file, or a folder to put it in; default
        the current folder, under the server's file name); returns the file's path.

        The file appears only once complete: it is written beside, then renamed."""
        path = f"/v1/searches/{search_id}/models/{rank}/{model_format}"
        with self._call(), self._http.stream("GET", path) as response:
            if response.is_error:
                response.read()
                raise _error(response)
            name = _attachment_name(response) or f"{search_id}-rank{rank}{model_format.suffix}"
            target = output / name if output and output.is_dir() else output or Path(name)
            partial = target.with_name(f".{target.name}.part")
            try:
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes(1 << 20):
                        file.write(chunk)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        return target

    def _revalidated(self, path: str) -> Any:
        """The JSON at ``path``: the last copy if the server says it is unchanged (304)."""
        copy = self._copies.get(path)
        headers = {"If-None-Match": copy[0]} if copy else {}
        with self._call():
            response = self._http.get(path, headers=headers)
        if response.status_code == httpx.codes.NOT_MODIFIED and copy:
            return copy[1]
        if response.is_error:
            raise _error(response)
        body = response.json()
        if tag := response.headers.get("etag"):
            self._copies[path] = (tag, body)
        return body

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._call():
            response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise _error(response)
        return response.json()

    @contextmanager
    def _call(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError:
            raise ApiError(
                f"the server is unreachable at {self.url} (is `nas serve` running there? "
                "set --url or NAS_URL)"
            ) from None
        except httpx.TimeoutException:
            raise ApiError(f"the server at {self.url} did not answer in time") from None
        except httpx.TransportError as error:
            raise ApiError(f"the connection to {self.url} failed: {error}") from None


def _attachment_name(response: httpx.Response) -> str | None:
    header = Message()
    header["content-disposition"] = response.headers.get("content-disposition", "")
    name = header.get_filename()
    # Only a bare name: what the server says must not choose a folder on this machine.
    return Path(name).name if name else None


def _error(response: httpx.Response) -> ApiError:
    """One line for a failed response, in the server's words where it gave any."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    status = response.status_code
    if status == 401:
        message = (
            "the server refused the token (401): it is missing, wrong or revoked; "
            "pass --token or set NAS_TOKEN (an operator makes one with `nas token create`)"
        )
    elif status == 422 and isinstance(detail, list):
        message = "invalid request: " + "; ".join(_problem(problem) for problem in detail)
    elif isinstance(detail, str):
        message = detail
    else:
        message = response.text.strip()[:200] or response.reason_phrase
    return ApiError(f"{message} ({status})" if status != 401 else message, status)


def _problem(problem: dict[str, Any]) -> str:
    """``dataset.image_size: Input should be ...`` from one of FastAPI's 422 entries."""
    location = [str(part) for part in problem.get("loc", ())]
    if location and location[0] in {"body", "path", "query", "header"}:
        location = location[1:]
    field = ".".join(location)
    return f"{field}: {problem.get('msg', 'invalid')}" if field else str(problem.get("msg"))
