"""The repository's lifecycle policy, played against images that registered model versions reference.

The policy is read from the synthesized TrainingStack; ``ecr_lifecycle.expired`` applies ECR's evaluation
rules to a repository as it looks after a year of training: the content-tagged images of live, rollback and
rejected model versions (all registered, so all must stay deployable), the image the pipelines run now, many
unreferenced older builds, and untagged leftovers.
"""

from __future__ import annotations

import datetime
import json

import pytest

from tests.stacks.cfn_values import resources_of_type
from tests.stacks.ecr_lifecycle import Image, expired

NOW = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)


def _image(name: str, days_ago: int, tagged: bool = True) -> Image:
    return Image(f"sha256:{name}", (f"{name}",) if tagged else (), NOW - datetime.timedelta(days=days_ago))


# Referenced: what model package versions name (live, the rollback target, a rejected one, an old one)
# and what the pipelines run now.
REFERENCED = [
    _image("served", 400),
    _image("rollback", 200),
    _image("rejected", 90),
    _image("oldest", 700),
    _image("pipeline", 0),
]
UNREFERENCED = [_image(f"build{n:02d}", n) for n in range(1, 41)]  # more builds than any count rule keeps
UNTAGGED = [_image("untagged-old", 30, tagged=False), _image("untagged-new", 2, tagged=False)]
IMAGES = REFERENCED + UNREFERENCED + UNTAGGED


@pytest.fixture(scope="module")
def policy(synthesized_app) -> dict:
    template = synthesized_app.template_json["TrainingStack"]
    (repository,) = resources_of_type(template, "AWS::ECR::Repository").values()
    return json.loads(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])


def test_no_tagged_image_ever_expires_so_every_registered_version_stays_deployable(policy):
    for years in (0, 1, 10):
        gone = expired(policy, IMAGES, NOW + datetime.timedelta(days=365 * years))
        assert not gone & {i.digest for i in REFERENCED}
        assert not gone & {i.digest for i in UNREFERENCED}  # `ops images prune` decides those


def test_untagged_images_expire_after_the_configured_days(policy, synthesized_app):
    days = synthesized_app.stacks["TrainingStack"].settings.image.untagged_image_days
    assert expired(policy, IMAGES, NOW) == ({"sha256:untagged-old"} if days < 30 else set())
    assert expired(policy, IMAGES, NOW + datetime.timedelta(days=days)) == {
        "sha256:untagged-old",
        "sha256:untagged-new",
    }


def test_the_former_keep_30_newest_rule_expired_live_and_rollback_images():
    """What the stack used to deploy: the player sees the outage (an endpoint that cannot pull its image)."""
    former = {
        "rules": [
            {
                "rulePriority": 1,
                "description": "Keep the 30 newest images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 30},
                "action": {"type": "expire"},
            }
        ]
    }
    assert {"sha256:served", "sha256:rollback", "sha256:oldest"} <= expired(former, IMAGES, NOW)


def test_the_player_follows_ecr_rule_priority_and_tag_selection():
    images = [_image("prod-1", 50), _image("prod-2", 40), _image("dev-1", 30), _image("dev-2", 20)]
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": ["prod-*"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 5,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
                "action": {"type": "expire"},
            },
        ]
    }
    # prod-* images belong to rule 1 (which keeps 5), so rule 2 sees only dev-1 and dev-2 and keeps dev-2.
    assert expired(policy, images, NOW) == {"sha256:dev-1"}
    with pytest.raises(AssertionError, match="unsupported"):
        expired(
            {
                "rules": [
                    {
                        **policy["rules"][0],
                        "selection": {
                            "tagStatus": "mystery",
                            "countType": "imageCountMoreThan",
                            "countNumber": 1,
                        },
                    }
                ]
            },
            images,
            NOW,
        )
