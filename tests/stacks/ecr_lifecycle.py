"""Plays an ECR lifecycle policy against a list of images: which would ECR expire?

It follows ECR's documented evaluation (Amazon ECR User Guide, "Lifecycle policy evaluation rules"): rules
in ascending ``rulePriority``; an image that matches a rule's tag selection belongs to that rule and is not
considered by lower-priority rules (so it is expired by at most one rule); ``tagStatus`` ``tagged`` needs
``tagPrefixList`` or ``tagPatternList`` and selects images having a tag matching every entry, ``untagged``
images without tags, ``any`` every image; ``imageCountMoreThan`` keeps that many most recently pushed images
of the rule's selection and expires the rest, ``sinceImagePushed`` expires images pushed more than the given
number of days ago. Anything else in a policy is refused, so a policy growing a construct this does not model
fails the test instead of being misjudged.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from fnmatch import fnmatchcase

_SELECTION_KEYS = {"tagStatus", "tagPrefixList", "tagPatternList", "countType", "countNumber", "countUnit"}


@dataclass(frozen=True)
class Image:
    """One image in the repository: its digest, tags and push time."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime.datetime


def _selected(selection: dict, image: Image) -> bool:
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not image.tags
    assert status == "tagged", f"unsupported tagStatus {status!r}"
    prefixes, patterns = selection.get("tagPrefixList", []), selection.get("tagPatternList", [])
    assert prefixes or patterns, "tagStatus 'tagged' needs tagPrefixList or tagPatternList"
    return all(any(t.startswith(p) for t in image.tags) for p in prefixes) and all(
        any(fnmatchcase(t, p) for t in image.tags) for p in patterns
    )


def expired(policy: dict, images: list[Image], now: datetime.datetime) -> set[str]:
    """Digests of the images ``policy`` expires at ``now``."""
    assert set(policy) == {"rules"}, f"unsupported policy keys {set(policy)}"
    remaining, gone = list(images), set()
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        assert set(rule) <= {"rulePriority", "description", "selection", "action"}, rule
        assert rule["action"] == {"type": "expire"}, rule["action"]
        selection = rule["selection"]
        assert set(selection) <= _SELECTION_KEYS, selection
        matched = [i for i in remaining if _selected(selection, i)]
        remaining = [i for i in remaining if i not in matched]
        if selection["countType"] == "imageCountMoreThan":
            newest_first = sorted(matched, key=lambda i: i.pushed_at, reverse=True)
            gone |= {i.digest for i in newest_first[selection["countNumber"] :]}
        else:
            assert selection["countType"] == "sinceImagePushed", selection
            assert selection["countUnit"] == "days", selection
            limit = now - datetime.timedelta(days=selection["countNumber"])
            gone |= {i.digest for i in matched if i.pushed_at < limit}
    return gone
