"""The experiment-tracking section: the SageMaker managed MLflow tracking server every run is recorded in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stacks.settings.context import Context

MODES = ("create", "existing", "none")
SIZES = ("Small", "Medium", "Large")  # TrackingServerSize: the load it serves, not the data it holds
# A tracking server or MLflow app of SageMaker (MlflowConfig's MlflowResourceArn, narrowed to the two kinds).
TRACKING_ARN = re.compile(
    r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:[0-9]{12}:"
    r"mlflow-(tracking-server|app)/[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
)


@dataclass(frozen=True)
class TrackingSettings:
    """Where the pipelines' runs are tracked: a server the stack creates, an existing one, or none."""

    mode: str  # trackingServer: create (default), existing (trackingServerArn) or none
    server_arn: str  # trackingServerArn: with `existing`, the server's (or MLflow app's) ARN; else empty
    server_size: str  # trackingServerSize: Small, Medium or Large (a created server)

    @property
    def enabled(self) -> bool:
        """Whether the pipelines log their runs to MLflow."""
        return self.mode != "none"

    @classmethod
    def from_context(cls, ctx: Context) -> TrackingSettings:
        """Read the tracking section: an ARN exactly when the mode is `existing`."""
        mode = ctx.choice("trackingServer", MODES)
        arn = ctx.text(
            "trackingServerArn",
            TRACKING_ARN,
            "a SageMaker MLflow ARN (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/"
            "<name> or mlflow-app/<id>)",
            allow_empty=True,
        )
        ctx.require(
            bool(arn) == (mode == "existing"),
            "trackingServerArn",
            arn,
            "an ARN with trackingServer=existing, and empty otherwise",
        )
        return cls(mode, arn, ctx.choice("trackingServerSize", SIZES))
