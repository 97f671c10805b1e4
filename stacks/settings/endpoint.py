"""The endpoint section: model version, instances, autoscaling, blue/green updates and alarms."""

from __future__ import annotations

import re
from dataclasses import dataclass

from jax_llm.contract.serving import DECODE_SLOTS_VARIABLE, DEFAULT_DECODE_SLOTS, TENSOR_PARALLEL_VARIABLE
from stacks.settings.context import Context
from stacks.settings.pipeline import PipelineSettings

# A versioned model package ARN, as -c modelPackageArn=... names the version to serve.
MODEL_PACKAGE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[a-zA-Z0-9-]{1,63}/\d+$"
)
TRAFFIC_SHIFTING_MODES = ("CANARY", "LINEAR")
# variant: the model on a production variant (min 1 instance, blue/green updates); inference-components: the
# model as an inference component on an endpoint with managed instance scaling (copies and instances may
# scale to zero; rolling updates).
VARIANT_MODE, IC_MODE = "variant", "inference-components"
ENDPOINT_MODES = (VARIANT_MODE, IC_MODE)
# SageMaker stops a blue/green update that takes longer than this (MaximumExecutionTimeoutInSeconds).
MAX_DEPLOYMENT_SECONDS = 14400


@dataclass(frozen=True)
class EndpointSettings:
    """The real-time endpoint: model version, instances, autoscaling, blue/green updates and alarms."""

    mode: str  # endpointMode: variant (a production variant) or inference-components (scale to zero)
    model_package_arn: str  # modelPackageArn: version to serve; "" = newest Approved, found at deploy time
    lookup_token: str  # modelPackageLookupToken: a new value makes a deploy look up the newest Approved again
    instance_type: str  # endpointInstanceType: GPU instance of the variant
    initial_instance_count: int  # endpointInitialInstanceCount: instances when the endpoint is created
    autoscaling: bool  # endpointAutoscaling: false removes the scalable target (to change instance type)
    min_instance_count: int  # endpointMinInstanceCount: autoscaling floor (0 only with inference-components)
    max_instance_count: int  # endpointMaxInstanceCount: autoscaling ceiling
    decode_slots: int  # endpointDecodeSlots: requests one instance generates at once; 0 = the image's default
    tensor_parallel: int  # endpointTensorParallel: GPUs the model is split over; 0 = the fewest that hold it
    target_concurrency_percent: int  # endpointTargetConcurrencyPercent: scaling target, % of the decode slots
    scale_out_cooldown_seconds: int  # endpointScaleOutCooldownSeconds
    scale_in_cooldown_seconds: int  # endpointScaleInCooldownSeconds
    startup_timeout_seconds: int  # endpointStartupHealthCheckTimeoutSeconds: load + compile until /ping 200
    download_timeout_seconds: int  # endpointModelDownloadTimeoutSeconds: model.tar.gz download and unpack
    data_capture_percent: int  # endpointDataCapturePercent: requests and responses captured to S3; 0 = off
    traffic_shifting: str  # endpointTrafficShifting: CANARY (one step, then the rest) or LINEAR (equal steps)
    traffic_step_percent: int  # endpointTrafficStepPercent: canary size or linear step, % of the new fleet
    bake_seconds: int  # endpointBakeSeconds: watch the alarms this long after each traffic shift
    termination_wait_seconds: int  # endpointTerminationWaitSeconds: keep the old fleet this long at 100%
    latency_alarm_ms: int  # endpointLatencyAlarmMs: p90 ModelLatency that rolls an update back
    ttft_alarm_ms: int  # endpointTimeToFirstTokenAlarmMs: p90 time to first token that rolls an update back
    error_alarm_count: int  # endpointErrorAlarmCount: 5xx responses per minute that roll an update back
    # inference-components mode only (read, and checked, in both modes):
    copy_accelerators: int  # endpointCopyAccelerators: GPUs one copy of the model reserves (0 on CPU types)
    copy_memory_mb: int  # endpointCopyMemoryMb: host memory one copy reserves, MiB
    initial_copy_count: int  # endpointInitialCopyCount: copies when the component is created
    min_copy_count: int  # endpointMinCopyCount: copies autoscaling keeps; 0 = scale to zero when idle
    max_copy_count: int  # endpointMaxCopyCount: copies autoscaling may start

    @classmethod
    def from_context(cls, ctx: Context, pipeline: PipelineSettings) -> EndpointSettings:
        """Read the endpoint section; counts, steps and timeouts are checked against each other."""
        settings = cls(
            mode=ctx.choice("endpointMode", ENDPOINT_MODES),
            model_package_arn=ctx.text(
                "modelPackageArn",
                MODEL_PACKAGE_ARN,
                "a versioned model package ARN (arn:aws:sagemaker:<region>:<account>:"
                "model-package/<group>/<version>)",
                allow_empty=True,
            ),
            lookup_token=ctx.text(
                "modelPackageLookupToken",
                re.compile(r"^[a-zA-Z0-9._:-]{0,64}$"),
                "up to 64 letters, digits and . _ : -",
            ),
            instance_type=ctx.ml_instance_type("endpointInstanceType"),
            initial_instance_count=ctx.integer("endpointInitialInstanceCount", minimum=1, maximum=100),
            autoscaling=ctx.boolean("endpointAutoscaling"),
            min_instance_count=ctx.integer("endpointMinInstanceCount", minimum=0, maximum=100),
            max_instance_count=ctx.integer("endpointMaxInstanceCount", minimum=1, maximum=100),
            decode_slots=ctx.integer("endpointDecodeSlots", minimum=0, maximum=1024),
            tensor_parallel=ctx.integer("endpointTensorParallel", minimum=0, maximum=16),
            target_concurrency_percent=ctx.integer(
                "endpointTargetConcurrencyPercent", minimum=10, maximum=100
            ),
            scale_out_cooldown_seconds=ctx.integer(
                "endpointScaleOutCooldownSeconds", minimum=0, maximum=3600
            ),
            scale_in_cooldown_seconds=ctx.integer("endpointScaleInCooldownSeconds", minimum=0, maximum=3600),
            startup_timeout_seconds=ctx.integer(
                "endpointStartupHealthCheckTimeoutSeconds", minimum=60, maximum=3600
            ),
            download_timeout_seconds=ctx.integer(
                "endpointModelDownloadTimeoutSeconds", minimum=60, maximum=3600
            ),
            data_capture_percent=ctx.integer("endpointDataCapturePercent", minimum=0, maximum=100),
            traffic_shifting=ctx.choice("endpointTrafficShifting", TRAFFIC_SHIFTING_MODES),
            traffic_step_percent=ctx.integer("endpointTrafficStepPercent", minimum=1, maximum=99),
            bake_seconds=ctx.integer("endpointBakeSeconds", minimum=0, maximum=3600),
            termination_wait_seconds=ctx.integer("endpointTerminationWaitSeconds", minimum=0, maximum=3600),
            latency_alarm_ms=ctx.integer("endpointLatencyAlarmMs", minimum=1, maximum=60000),
            ttft_alarm_ms=ctx.integer("endpointTimeToFirstTokenAlarmMs", minimum=1, maximum=60000),
            error_alarm_count=ctx.integer("endpointErrorAlarmCount", minimum=1),
            copy_accelerators=ctx.integer("endpointCopyAccelerators", minimum=0, maximum=16),
            copy_memory_mb=ctx.integer("endpointCopyMemoryMb", minimum=128, maximum=4 * 1024 * 1024),
            initial_copy_count=ctx.integer("endpointInitialCopyCount", minimum=1, maximum=100),
            min_copy_count=ctx.integer("endpointMinCopyCount", minimum=0, maximum=100),
            max_copy_count=ctx.integer("endpointMaxCopyCount", minimum=1, maximum=100),
        )
        low, high = settings.min_instance_count, settings.max_instance_count
        # Only an endpoint of inference components can have no instance (SageMaker's scale-to-zero rule).
        ctx.require(
            low >= 1 or settings.inference_components,
            "endpointMinInstanceCount",
            low,
            f"at least 1 with endpointMode={VARIANT_MODE} (0 needs endpointMode={IC_MODE})",
        )
        ctx.require(
            low <= high, "endpointMaxInstanceCount", high, f"at least endpointMinInstanceCount ({low})"
        )
        ctx.require(
            max(low, 1) <= settings.initial_instance_count <= high,
            "endpointInitialInstanceCount",
            settings.initial_instance_count,
            f"between endpointMinInstanceCount ({low}) and endpointMaxInstanceCount ({high})",
        )
        # A rolling update of an inference component replaces 5-50 % of its copies per batch
        # (SageMaker API reference, InferenceComponentRollingUpdatePolicy.MaximumBatchSize).
        step = settings.traffic_step_percent
        ctx.require(
            not settings.inference_components or 5 <= step <= 50,
            "endpointTrafficStepPercent",
            step,
            f"between 5 and 50 with endpointMode={IC_MODE} (the copies a rolling update replaces at once)",
        )
        low, high = settings.min_copy_count, settings.max_copy_count
        ctx.require(low <= high, "endpointMaxCopyCount", high, f"at least endpointMinCopyCount ({low})")
        ctx.require(
            low <= settings.initial_copy_count <= high,
            "endpointInitialCopyCount",
            settings.initial_copy_count,
            f"between endpointMinCopyCount ({low}) and endpointMaxCopyCount ({high})",
        )
        ctx.require(
            settings.target_concurrency >= 1,
            "endpointTargetConcurrencyPercent",
            settings.target_concurrency_percent,
            f"at least one request of the {settings.effective_decode_slots} "
            "decode slots (endpointDecodeSlots, 0 = the image's default)",
        )
        # The registered model package lists the instance types it may be deployed on.
        ctx.require(
            settings.instance_type in pipeline.inference_instance_types,
            "endpointInstanceType",
            settings.instance_type,
            "one of inferenceInstanceTypes (the types the model package "
            "supports): " + ", ".join(pipeline.inference_instance_types),
        )
        ctx.require(
            settings.deployment_timeout_seconds <= MAX_DEPLOYMENT_SECONDS,
            "endpointBakeSeconds",
            settings.bake_seconds,
            "small enough that the whole blue/green update (download, "
            f"startup, {settings.traffic_shifts} bake periods, termination wait) fits SageMaker's "
            f"{MAX_DEPLOYMENT_SECONDS} s; it needs {settings.deployment_timeout_seconds} s",
        )
        return settings

    @property
    def inference_components(self) -> bool:
        """True when the model is served as an inference component (endpointMode=inference-components)."""
        return self.mode == IC_MODE

    @property
    def scales_to_zero(self) -> bool:
        """True when idle copies, and then idle instances, go down to zero."""
        return self.inference_components and self.autoscaling and self.min_copy_count == 0

    @property
    def effective_decode_slots(self) -> int:
        """Decode slots of one instance: endpointDecodeSlots, or the image's default when that is 0."""
        return self.decode_slots or DEFAULT_DECODE_SLOTS

    @property
    def container_environment(self) -> dict[str, str]:
        """What the Model sets in the container: the slot count and the split only when not the image's default."""
        environment = {DECODE_SLOTS_VARIABLE: str(self.decode_slots)} if self.decode_slots else {}
        if self.tensor_parallel:
            environment[TENSOR_PARALLEL_VARIABLE] = str(self.tensor_parallel)
        return environment

    @property
    def target_concurrency(self) -> float:
        """Concurrent requests per instance (or copy) that autoscaling holds: a share of the decode slots."""
        return self.effective_decode_slots * self.target_concurrency_percent / 100

    @property
    def traffic_shifts(self) -> int:
        """Traffic shifts of one blue/green update: canary then the rest, or 100/step equal linear steps."""
        return 2 if self.traffic_shifting == "CANARY" else -(-100 // self.traffic_step_percent)

    @property
    def deployment_timeout_seconds(self) -> int:
        """Upper bound of one update: new fleet up (download, startup), every bake, the termination wait."""
        return max(
            600,
            self.download_timeout_seconds
            + self.startup_timeout_seconds
            + self.traffic_shifts * self.bake_seconds
            + self.termination_wait_seconds,
        )
