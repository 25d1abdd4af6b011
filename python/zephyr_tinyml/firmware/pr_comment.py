"""Create or update the ONE size comment on a pull request (``.github/workflows/size-comment.yml``).

Runs in the privileged ``workflow_run`` job that follows the unprivileged ``size`` workflow, so
that pull requests from forks get their comment too (a fork's token cannot write). That job runs
this code from the default branch, never the pull request's; what the pull request produced (the
comment text and its number, from the ``size`` run's artifact) is data: the number must be digits,
the pull request's head must be the commit the ``size`` run measured, and the text is posted as a
comment, nothing else. Standard library only, so the job needs no installation step.

The comment is found again by :data:`MARKER`, the hidden first line of the text
``tinyml size --compare`` renders, among the comments the workflow's bot wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterable

# The hidden first line of the comment `tinyml size --compare` renders (size_compare.py).
MARKER = "<!-- zephyr-tinyml-size-report -->"
API = "https://api.github.com"
BOT_LOGIN = "github-actions[bot]"
MAX_BODY = 65_000   # GitHub refuses comment bodies over 65,536 characters


class CommentError(RuntimeError):
    """A fault the workflow log should name (exit status 1)."""


def pr_number(text: str) -> int:
    """The pull-request number the ``size`` run stored: digits only, anything else is refused."""
    value = text.strip()
    if not re.fullmatch(r"[1-9][0-9]{0,9}", value):
        raise CommentError(f"the size run's pr-number file holds {value[:40]!r}, not a pull-request number")
    return int(value)


def comment_body(text: str) -> str:
    """The text to post: starts with the marker, and fits GitHub's limit (cut at a line, saying so)."""
    body = text if text.startswith(MARKER) else f"{MARKER}\n{text}"
    if len(body) <= MAX_BODY:
        return body
    cut = body.rfind("\n", 0, MAX_BODY - 200)
    return body[:cut] + "\n\n(cut: the full report is the `size-report` artifact of the run)\n"


def find_comment(comments: Iterable[dict[str, Any]], bot: str = BOT_LOGIN) -> int | None:
    """The id of the comment to update: the first one the bot wrote that starts with the marker."""
    for comment in comments:
        if (comment.get("user") or {}).get("login") == bot and str(comment.get("body", "")).startswith(MARKER):
            return int(comment["id"])
    return None


def _request(method: str, url: str, token: str, payload: dict[str, Any] | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Accept": "application/vnd.github+json", "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "zephyr-tinyml-size-comment"})
    with urllib.request.urlopen(request, timeout=30) as response:   # noqa: S310 (fixed https host)
        return json.loads(response.read() or b"null")


def upsert(repo: str, number: int, head_sha: str, body: str, token: str) -> str:
    """Create or update the comment; returns its URL."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise CommentError(f"repository {repo!r} is not owner/name")
    pull = _request("GET", f"{API}/repos/{repo}/pulls/{number}", token)
    if pull["head"]["sha"] != head_sha:
        raise CommentError(f"pull request #{number} is at {pull['head']['sha'][:12]}, the size run measured "
                           f"{head_sha[:12]}: a newer push has its own run; not commenting")
    comments: list[dict[str, Any]] = []
    page = 1
    while True:
        batch = _request("GET", f"{API}/repos/{repo}/issues/{number}/comments?per_page=100&page={page}", token)
        comments += batch
        if len(batch) < 100:
            break
        page += 1
    existing = find_comment(comments)
    if existing is None:
        made = _request("POST", f"{API}/repos/{repo}/issues/{number}/comments", token, {"body": body})
    else:
        made = _request("PATCH", f"{API}/repos/{repo}/issues/comments/{existing}", token, {"body": body})
    return str(made.get("html_url", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zephyr_tinyml.firmware.pr_comment",
                                     description="Create or update the size comment of a pull request.")
    parser.add_argument("--repo", required=True, help="owner/name")
    parser.add_argument("--pr-file", type=Path, required=True, help="file holding the pull-request number")
    parser.add_argument("--head-sha", required=True, help="the commit the size run measured")
    parser.add_argument("--body", type=Path, required=True, help="the comment (tinyml size --compare's markdown)")
    args = parser.parse_args(argv)
    token = os.environ.get("GH_TOKEN", "")
    if not token:
        print("error: GH_TOKEN is not set", file=sys.stderr)
        return 1
    try:
        url = upsert(args.repo, pr_number(args.pr_file.read_text()), args.head_sha,
                     comment_body(args.body.read_text(errors="replace")), token)
    except (CommentError, OSError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"size comment: {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
