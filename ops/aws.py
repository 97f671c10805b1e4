"""AWS clients for the ops CLI: one boto3 session from --profile/--region/--endpoint-url."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

# Interactive tool: fail fast rather than retry for a minute against a wrong endpoint or missing resource.
_CLIENT_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=10, read_timeout=70)


@dataclass
class Aws:
    """Creates (once each) clients for one profile, region and, for emulators such as moto, endpoint URL."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    _session: boto3.Session | None = field(default=None, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str):
        """The boto3 client for `service` with the CLI's retry and timeout settings."""
        if service not in self._clients:
            if self._session is None:
                self._session = boto3.Session(profile_name=self.profile, region_name=self.region)
            self._clients[service] = self._session.client(
                service, endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG
            )
        return self._clients[service]
