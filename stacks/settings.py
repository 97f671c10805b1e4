"""Typed, validated settings for the CDK app, read from CDK context (defaults live in cdk.json).

Each section is a frozen dataclass with a ``from_context`` classmethod; ``Settings.from_context`` builds
them all. A wrong value raises one ``SettingsError`` naming the context key, the value and what is
allowed, so ``cdk synth`` stops before any resource is defined.

Adding a section: write a frozen dataclass with ``from_context(cls, ctx: Context)`` that reads its keys
through ``ctx`` (``ctx.text``, ``ctx.integer``, ``ctx.choice``, ``ctx.ml_instance_type``, ...), add a
field for it to ``Settings`` and one line to ``Settings.from_context``, and default every key in cdk.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from jax_llm.contract.hyperparameters import HyperparameterError, TrainConfig, parse_hyperparameters

# An ML instance type as SageMaker names them: ml.<family>.<size>, e.g. ml.p4de.24xlarge, ml.g5.xlarge.
ML_INSTANCE_TYPE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
# Lower-case name usable in ECR repository names, SageMaker resource names and S3 prefixes.
RESOURCE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
# S3 bucket naming rules (without the rarely used dotted forms).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# Retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)
REMOVAL_POLICIES = ("retain", "destroy")


class SettingsError(ValueError):
    """A context value that cannot be used; the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"context key '{key}' has value {value!r}; allowed: {allowed} "
                         f"(set it in cdk.json or with `cdk synth -c {key}=...`)")


class Context:
    """Reads and validates typed values from CDK context (a construct's node or a plain mapping)."""

    def __init__(self, lookup: Callable[[str], Any]) -> None:
        self._lookup = lookup

    @classmethod
    def of(cls, source: Any) -> Context:
        """Wrap a construct (its node's context), a construct node, or a plain mapping of context values."""
        if isinstance(source, Context):
            return source
        if isinstance(source, Mapping):
            return cls(source.get)
        node = getattr(source, "node", source)
        return cls(node.try_get_context)

    def raw(self, key: str) -> Any:
        """The value for ``key``; a missing key is an error because cdk.json defaults every key."""
        value = self._lookup(key)
        if value is None:
            raise SettingsError(key, None, "a value; every key is defaulted in cdk.json's context")
        return value

    def text(self, key: str, pattern: re.Pattern[str] | None = None, allowed: str = "a string",
             allow_empty: bool = False) -> str:
        """A string, optionally matching ``pattern``; ``allowed`` describes the pattern to the user."""
        value = self.raw(key)
        if not isinstance(value, str):
            raise SettingsError(key, value, allowed)
        if value == "" and allow_empty:
            return value
        if pattern is not None and not pattern.fullmatch(value):
            raise SettingsError(key, value, allowed + (" or empty" if allow_empty else ""))
        return value

    def integer(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer within [minimum, maximum]; strings of digits (from ``-c key=3``) are accepted."""
        value = self.raw(key)
        bounds = f"an integer{'' if minimum is None else f' >= {minimum}'}" \
                 f"{'' if maximum is None else f' and <= {maximum}'}"
        number = _as_int(value)
        if number is None or (minimum is not None and number < minimum) or \
                (maximum is not None and number > maximum):
            raise SettingsError(key, value, bounds)
        return number

    def number(self, key: str, minimum: float | None = None, maximum: float | None = None) -> float:
        """A real number within [minimum, maximum]; numeric strings are accepted."""
        value = self.raw(key)
        bounds = f"a number{'' if minimum is None else f' >= {minimum}'}" \
                 f"{'' if maximum is None else f' and <= {maximum}'}"
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number != number or (minimum is not None and number < minimum) or \
                (maximum is not None and number > maximum):
            raise SettingsError(key, value, bounds)
        return number

    def boolean(self, key: str) -> bool:
        """A boolean; the strings "true" and "false" (from ``-c key=false``) are accepted."""
        value = self.raw(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise SettingsError(key, value, "true or false")

    def choice(self, key: str, choices: Sequence[Any]) -> Any:
        """One of ``choices`` (compared after integer coercion when the choices are integers)."""
        value = self.raw(key)
        candidate = _as_int(value) if all(isinstance(c, int) for c in choices) else value
        if candidate is None or candidate not in choices:
            raise SettingsError(key, value, "one of " + ", ".join(str(c) for c in choices))
        return candidate

    def ml_instance_type(self, key: str) -> str:
        """A SageMaker instance type such as ml.g5.xlarge."""
        return self.text(key, ML_INSTANCE_TYPE,
                         "a SageMaker instance type like ml.g5.xlarge (ml.<family>.<size>)")

    def require(self, condition: bool, key: str, value: Any, allowed: str) -> None:
        """A cross-field check: raise a SettingsError on ``key`` unless ``condition`` holds."""
        if not condition:
            raise SettingsError(key, value, allowed)


def _as_int(value: Any) -> int | None:
    """``value`` as an int when it is one (or a string of one); booleans and floats are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


@dataclass(frozen=True)
class ProjectSettings:
    """Naming and lifecycle of everything the stacks create."""

    name: str  # projectName: prefix of named resources (ECR repository, SageMaker names)
    removal_policy: str  # removalPolicy: "retain" keeps data-bearing resources on stack deletion

    @classmethod
    def from_context(cls, ctx: Context) -> ProjectSettings:
        """Read the project section."""
        return cls(
            name=ctx.text("projectName", RESOURCE_NAME,
                          "3-40 characters: lower-case letters, digits and '-', starting with a letter"),
            removal_policy=ctx.choice("removalPolicy", REMOVAL_POLICIES),
        )


@dataclass(frozen=True)
class ImageSettings:
    """The container image built from containers/jax-llm and its ECR repository."""

    cpu_only: bool  # imageCpuOnly: build the CPU-only variant (no CUDA wheels, no EFA)
    max_image_count: int  # ecrMaxImageCount: the lifecycle rule keeps this many newest images

    @classmethod
    def from_context(cls, ctx: Context) -> ImageSettings:
        """Read the image section."""
        return cls(
            cpu_only=ctx.boolean("imageCpuOnly"),
            max_image_count=ctx.integer("ecrMaxImageCount", minimum=1, maximum=1000),
        )


@dataclass(frozen=True)
class StorageSettings:
    """S3 buckets, the KMS key and log retention."""

    data_bucket_name: str  # dataBucketName: an existing bucket with training data; "" creates one
    noncurrent_version_days: int  # noncurrentVersionExpirationDays: old object versions kept this long
    access_log_retention_days: int  # accessLogRetentionDays: S3 server access logs expire after this
    log_retention_days: int  # logRetentionDays: CloudWatch Logs retention for the stacks' log groups
    kms_pending_window_days: int  # kmsPendingWindowDays: waiting period before a deleted key is gone

    @classmethod
    def from_context(cls, ctx: Context) -> StorageSettings:
        """Read the storage section."""
        return cls(
            data_bucket_name=ctx.text("dataBucketName", BUCKET_NAME,
                                      "an S3 bucket name (3-63 lower-case letters, digits, '-')",
                                      allow_empty=True),
            noncurrent_version_days=ctx.integer("noncurrentVersionExpirationDays", minimum=1, maximum=3650),
            access_log_retention_days=ctx.integer("accessLogRetentionDays", minimum=1, maximum=3650),
            log_retention_days=ctx.choice("logRetentionDays", LOG_RETENTION_DAYS),
            kms_pending_window_days=ctx.integer("kmsPendingWindowDays", minimum=7, maximum=30),
        )


@dataclass(frozen=True)
class RegistrySettings:
    """The SageMaker Model Registry."""

    model_package_group_name: str  # modelPackageGroupName: the group every trained model is registered in

    @classmethod
    def from_context(cls, ctx: Context) -> RegistrySettings:
        """Read the registry section."""
        return cls(
            model_package_group_name=ctx.text(
                "modelPackageGroupName", re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"),
                "1-63 letters, digits and '-', not starting or ending with '-'"),
        )


def _string_map(ctx: Context, key: str, name_pattern: re.Pattern[str], allowed: str) -> dict[str, str]:
    """A JSON object of strings (from cdk.json, or a JSON string from ``-c key='{...}'``)."""
    value = ctx.raw(key)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SettingsError(key, value, allowed) from None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and name_pattern.fullmatch(k) and isinstance(v, (str, int, float, bool))
            for k, v in value.items()):
        raise SettingsError(key, value, allowed)
    return {k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in value.items()}


def _json_value(ctx: Context, key: str) -> Any:
    """The value as cdk.json holds it, or decoded from the JSON string that ``-c key='...'`` passes."""
    value = ctx.raw(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _number_range(ctx: Context, key: str, minimum: float, integer: bool = False) -> tuple[float, float]:
    """A [low, high] pair with minimum <= low < high."""
    value = _json_value(ctx, key)
    kinds = (int,) if integer else (int, float)
    if not (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, kinds) and not isinstance(v, bool) for v in value)
            and minimum <= value[0] < value[1]):
        raise SettingsError(key, value, f"[low, high] {'integers' if integer else 'numbers'} "
                                        f"with {minimum} <= low < high")
    return value[0], value[1]


def _canonical_hyperparameters(key: str, overrides: dict[str, str]) -> dict[str, str]:
    """Every trainer hyperparameter as the string the job receives: the overrides, validated by the trainer's
    own parser (a misspelt or out-of-range key stops synth), over the trainer's defaults."""
    try:
        config = parse_hyperparameters(overrides)
    except HyperparameterError as err:
        raise SettingsError(key, overrides, str(err)) from None

    def text(value: Any) -> str:
        return json.dumps(value) if isinstance(value, bool) else repr(value) if isinstance(value, float) \
            else str(value)

    return {f.name: text(getattr(config, f.name)) for f in dataclass_fields(TrainConfig)}


# Environment variable names SageMaker accepts in a training job's Environment.
ENVIRONMENT_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}$")


@dataclass(frozen=True)
class PipelineSettings:
    """The training pipeline: data, instances, spot, limits, hyperparameters, registration, deploy runs."""

    start_training: bool  # startTraining: a deploy whose training definition changed starts an execution
    prepare_data: bool  # pipelinePrepareData: default of PrepareData (tokenize raw text in a Prepare step)
    raw_data_prefix: str  # pipelineRawDataPrefix: raw text under s3://<data bucket>/<prefix>/
    tokenized_data_prefix: str  # pipelineTokenizedDataPrefix: <prefix>/{train,validation,tokenizer}/
    processing_instance_type: str  # processingInstanceType: the prepare job's (CPU) instance
    processing_volume_size_gb: int  # processingVolumeSizeGb: its EBS volume
    instance_type: str  # trainingInstanceType: GPU instance of the training jobs
    instance_count: int  # trainingInstanceCount: hosts per training job (one JAX process each)
    volume_size_gb: int  # trainingVolumeSizeGb: EBS volume per host (checkpoints, FastFile cache)
    use_spot: bool  # trainingUseSpot: managed spot (resumes from checkpoints after an interruption)
    max_runtime_seconds: int  # trainingMaxRuntimeSeconds: a job is stopped after this much training time
    max_wait_seconds: int  # trainingMaxWaitSeconds: runtime plus waiting for spot capacity
    hyperparameters: dict[str, str]  # trainingHyperparameters: overrides; here all of them, as strings
    environment: dict[str, str]  # trainingEnvironment: XLA/NCCL/EFA settings of the training containers
    max_val_loss: float  # registerMaxValLoss: register the model only when val_loss <= this
    model_approval_status: str  # modelApprovalStatus: status of a newly registered model package
    inference_instance_types: tuple[str, ...]  # inferenceInstanceTypes: real-time instances of the package

    @classmethod
    def from_context(cls, ctx: Context) -> PipelineSettings:
        """Read the pipeline section."""
        prefix = re.compile(r"^[a-zA-Z0-9!_.*'()-]+(/[a-zA-Z0-9!_.*'()-]+)*$")
        prefix_text = "an S3 key prefix without leading or trailing '/'"
        instance_types = ctx.raw("inferenceInstanceTypes")
        ctx.require(isinstance(instance_types, list) and 0 < len(instance_types) <= 15 and all(
            isinstance(t, str) and ML_INSTANCE_TYPE.fullmatch(t) for t in instance_types),
            "inferenceInstanceTypes", instance_types, "a list of 1-15 SageMaker instance types")
        settings = cls(
            start_training=ctx.boolean("startTraining"),
            prepare_data=ctx.boolean("pipelinePrepareData"),
            raw_data_prefix=ctx.text("pipelineRawDataPrefix", prefix, prefix_text),
            tokenized_data_prefix=ctx.text("pipelineTokenizedDataPrefix", prefix, prefix_text),
            processing_instance_type=ctx.ml_instance_type("processingInstanceType"),
            processing_volume_size_gb=ctx.integer("processingVolumeSizeGb", minimum=1, maximum=16384),
            instance_type=ctx.ml_instance_type("trainingInstanceType"),
            instance_count=ctx.integer("trainingInstanceCount", minimum=1, maximum=256),
            volume_size_gb=ctx.integer("trainingVolumeSizeGb", minimum=1, maximum=16384),
            use_spot=ctx.boolean("trainingUseSpot"),
            max_runtime_seconds=ctx.integer("trainingMaxRuntimeSeconds", minimum=60, maximum=28 * 86400),
            max_wait_seconds=ctx.integer("trainingMaxWaitSeconds", minimum=60, maximum=28 * 86400),
            hyperparameters=_canonical_hyperparameters("trainingHyperparameters", _string_map(
                ctx, "trainingHyperparameters", re.compile(r"^[a-z_][a-z0-9_]*$"),
                "a JSON object of trainer hyperparameters (see jax_llm/contract/hyperparameters.py)")),
            environment=_string_map(ctx, "trainingEnvironment", ENVIRONMENT_NAME,
                                    "a JSON object of environment variable names to string values"),
            max_val_loss=ctx.number("registerMaxValLoss", minimum=0.0),
            model_approval_status=ctx.choice("modelApprovalStatus", ("PendingManualApproval", "Approved")),
            inference_instance_types=tuple(instance_types),
        )
        # SageMaker rejects a spot job whose wait limit does not exceed its runtime limit.
        ctx.require(not settings.use_spot or settings.max_wait_seconds > settings.max_runtime_seconds,
                    "trainingMaxWaitSeconds", settings.max_wait_seconds,
                    f"more than trainingMaxRuntimeSeconds ({settings.max_runtime_seconds}) when "
                    "trainingUseSpot is true")
        return settings


REPO = Path(__file__).resolve().parent.parent  # trainingSourceDir is relative to the app's directory
TUNED_HYPERPARAMETERS = ("learning_rate", "warmup_steps", "weight_decay")  # what the tuner searches
SCRIPT_HYPERPARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,255}$")


@dataclass(frozen=True)
class ScriptSettings:
    """The team's own training script (script mode), run by the pipelines instead of the built-in GPT."""

    source_dir: str  # trainingSourceDir: its directory, relative to the app's; "" trains the built-in GPT
    entry_point: str  # trainingEntryPoint: the script in it (train.py, a module, or a .sh)
    hyperparameters: dict[str, str]  # trainingScriptHyperparameters: the script's own, JSON-encoded (SDK)
    # trainingScriptTunedNames: the script's names for the tuner's learning_rate, warmup_steps, weight_decay;
    # empty: the tuning pipeline keeps tuning the built-in GPT
    tuned_names: dict[str, str]

    @property
    def enabled(self) -> bool:
        return bool(self.entry_point)

    @property
    def tuned(self) -> bool:
        """Whether the tuning pipeline tunes the script (else it tunes the built-in GPT)."""
        return self.enabled and bool(self.tuned_names)

    @property
    def path(self) -> Path:
        return REPO / self.source_dir

    @classmethod
    def from_context(cls, ctx: Context) -> ScriptSettings:
        """Read the script-mode section: both keys or neither; the entry point must be in the directory."""
        source_dir = ctx.text("trainingSourceDir", allow_empty=True)
        entry_point = ctx.text("trainingEntryPoint", re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"),
                               "a file name in trainingSourceDir (train.py, a module, or a .sh)",
                               allow_empty=True)
        ctx.require(bool(source_dir) == bool(entry_point), "trainingEntryPoint", entry_point,
                    "set together with trainingSourceDir (both empty: the built-in GPT trainer)")
        ctx.require(not entry_point or (REPO / source_dir).is_dir(), "trainingSourceDir", source_dir,
                    f"a directory relative to {REPO}")
        ctx.require(not entry_point.endswith((".py", ".sh")) or (REPO / source_dir / entry_point).is_file(),
                    "trainingEntryPoint", entry_point, f"a file in {REPO / source_dir}")
        raw = _json_value(ctx, "trainingScriptHyperparameters")
        ctx.require(isinstance(raw, dict) and len(raw) <= 98 and all(
            isinstance(k, str) and SCRIPT_HYPERPARAMETER_NAME.fullmatch(k) and not k.startswith("sagemaker_")
            and isinstance(v, (str, int, float, bool)) and len(json.dumps(v)) <= 256 for k, v in raw.items()),
            "trainingScriptHyperparameters", raw,
            "a JSON object of at most 98 names (not sagemaker_*) to strings, numbers or booleans")
        names = _json_value(ctx, "trainingScriptTunedNames")
        ctx.require(isinstance(names, dict) and all(
            k in TUNED_HYPERPARAMETERS and isinstance(v, str) and SCRIPT_HYPERPARAMETER_NAME.fullmatch(v)
            and not v.startswith("sagemaker_") for k, v in names.items()),
            "trainingScriptTunedNames", names,
            f"a JSON object from some of {', '.join(TUNED_HYPERPARAMETERS)} to the script's argument names")
        return cls(source_dir, entry_point, {k: json.dumps(v) for k, v in raw.items()}, dict(names))


@dataclass(frozen=True)
class TuningSettings:
    """The tuning pipeline: job limits and the search ranges of learning rate, warmup and weight decay."""

    max_jobs: int  # tuningMaxJobs: training jobs in all
    max_parallel_jobs: int  # tuningMaxParallelJobs: jobs at once (each on trainingInstanceCount hosts)
    learning_rate: tuple[float, float]  # tuningLearningRateRange: searched on a log scale
    warmup_steps: tuple[int, int]  # tuningWarmupStepsRange
    weight_decay: tuple[float, float]  # tuningWeightDecayRange

    @classmethod
    def from_context(cls, ctx: Context, pipeline: PipelineSettings) -> TuningSettings:
        """Read the tuning section; ranges are checked against the trainer's limits and max_steps."""
        settings = cls(
            max_jobs=ctx.integer("tuningMaxJobs", minimum=1, maximum=750),
            max_parallel_jobs=ctx.integer("tuningMaxParallelJobs", minimum=1, maximum=100),
            learning_rate=_number_range(ctx, "tuningLearningRateRange", 1e-12),
            warmup_steps=_number_range(ctx, "tuningWarmupStepsRange", 0, integer=True),
            weight_decay=_number_range(ctx, "tuningWeightDecayRange", 0.0),
        )
        ctx.require(settings.max_parallel_jobs <= settings.max_jobs, "tuningMaxParallelJobs",
                    settings.max_parallel_jobs, f"at most tuningMaxJobs ({settings.max_jobs})")
        ctx.require(settings.learning_rate[1] <= 1.0, "tuningLearningRateRange", list(settings.learning_rate),
                    "a range within (0, 1]")
        ctx.require(settings.weight_decay[1] <= 1.0, "tuningWeightDecayRange", list(settings.weight_decay),
                    "a range within [0, 1]")
        max_steps = int(pipeline.hyperparameters["max_steps"])
        ctx.require(settings.warmup_steps[1] <= max_steps, "tuningWarmupStepsRange",
                    list(settings.warmup_steps),
                    f"a range within [0, max_steps={max_steps}] (the trainer rejects warmup above max_steps)")
        return settings


# A versioned model package ARN, as -c modelPackageArn=... names the version to serve.
MODEL_PACKAGE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[a-zA-Z0-9-]{1,63}/\d+$")
TRAFFIC_SHIFTING_MODES = ("CANARY", "LINEAR")
# SageMaker stops a blue/green update that takes longer than this (MaximumExecutionTimeoutInSeconds).
MAX_DEPLOYMENT_SECONDS = 14400


@dataclass(frozen=True)
class EndpointSettings:
    """The real-time endpoint: model version, instances, autoscaling, blue/green updates and alarms."""

    model_package_arn: str  # modelPackageArn: version to serve; "" = newest Approved, found at deploy time
    lookup_token: str  # modelPackageLookupToken: a new value makes a deploy look up the newest Approved again
    instance_type: str  # endpointInstanceType: GPU instance of the variant
    initial_instance_count: int  # endpointInitialInstanceCount: instances when the endpoint is created
    autoscaling: bool  # endpointAutoscaling: false removes the scalable target (to change instance type)
    min_instance_count: int  # endpointMinInstanceCount: autoscaling floor
    max_instance_count: int  # endpointMaxInstanceCount: autoscaling ceiling
    target_invocations: int  # endpointTargetInvocationsPerInstance: scaling target, per instance a minute
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
    error_alarm_count: int  # endpointErrorAlarmCount: 5xx responses per minute that roll an update back

    @classmethod
    def from_context(cls, ctx: Context, pipeline: PipelineSettings) -> EndpointSettings:
        """Read the endpoint section; counts, steps and timeouts are checked against each other."""
        settings = cls(
            model_package_arn=ctx.text("modelPackageArn", MODEL_PACKAGE_ARN,
                                       "a versioned model package ARN (arn:aws:sagemaker:<region>:<account>:"
                                       "model-package/<group>/<version>)", allow_empty=True),
            lookup_token=ctx.text("modelPackageLookupToken", re.compile(r"^[a-zA-Z0-9._:-]{0,64}$"),
                                  "up to 64 letters, digits and . _ : -"),
            instance_type=ctx.ml_instance_type("endpointInstanceType"),
            initial_instance_count=ctx.integer("endpointInitialInstanceCount", minimum=1, maximum=100),
            autoscaling=ctx.boolean("endpointAutoscaling"),
            min_instance_count=ctx.integer("endpointMinInstanceCount", minimum=1, maximum=100),
            max_instance_count=ctx.integer("endpointMaxInstanceCount", minimum=1, maximum=100),
            target_invocations=ctx.integer("endpointTargetInvocationsPerInstance", minimum=1, maximum=100000),
            scale_out_cooldown_seconds=ctx.integer("endpointScaleOutCooldownSeconds", minimum=0,
                                                   maximum=3600),
            scale_in_cooldown_seconds=ctx.integer("endpointScaleInCooldownSeconds", minimum=0, maximum=3600),
            startup_timeout_seconds=ctx.integer("endpointStartupHealthCheckTimeoutSeconds", minimum=60,
                                                maximum=3600),
            download_timeout_seconds=ctx.integer("endpointModelDownloadTimeoutSeconds", minimum=60,
                                                 maximum=3600),
            data_capture_percent=ctx.integer("endpointDataCapturePercent", minimum=0, maximum=100),
            traffic_shifting=ctx.choice("endpointTrafficShifting", TRAFFIC_SHIFTING_MODES),
            traffic_step_percent=ctx.integer("endpointTrafficStepPercent", minimum=1, maximum=99),
            bake_seconds=ctx.integer("endpointBakeSeconds", minimum=0, maximum=3600),
            termination_wait_seconds=ctx.integer("endpointTerminationWaitSeconds", minimum=0, maximum=3600),
            latency_alarm_ms=ctx.integer("endpointLatencyAlarmMs", minimum=1, maximum=60000),
            error_alarm_count=ctx.integer("endpointErrorAlarmCount", minimum=1),
        )
        low, high = settings.min_instance_count, settings.max_instance_count
        ctx.require(low <= high, "endpointMaxInstanceCount", high,
                    f"at least endpointMinInstanceCount ({low})")
        ctx.require(low <= settings.initial_instance_count <= high, "endpointInitialInstanceCount",
                    settings.initial_instance_count,
                    f"between endpointMinInstanceCount ({low}) and endpointMaxInstanceCount ({high})")
        # The registered model package lists the instance types it may be deployed on.
        ctx.require(settings.instance_type in pipeline.inference_instance_types, "endpointInstanceType",
                    settings.instance_type, "one of inferenceInstanceTypes (the types the model package "
                    "supports): " + ", ".join(pipeline.inference_instance_types))
        ctx.require(settings.deployment_timeout_seconds <= MAX_DEPLOYMENT_SECONDS, "endpointBakeSeconds",
                    settings.bake_seconds, "small enough that the whole blue/green update (download, "
                    f"startup, {settings.traffic_shifts} bake periods, termination wait) fits SageMaker's "
                    f"{MAX_DEPLOYMENT_SECONDS} s; it needs {settings.deployment_timeout_seconds} s")
        return settings

    @property
    def traffic_shifts(self) -> int:
        """Traffic shifts of one blue/green update: canary then the rest, or 100/step equal linear steps."""
        return 2 if self.traffic_shifting == "CANARY" else -(-100 // self.traffic_step_percent)

    @property
    def deployment_timeout_seconds(self) -> int:
        """Upper bound of one update: new fleet up (download, startup), every bake, the termination wait."""
        return max(600, self.download_timeout_seconds + self.startup_timeout_seconds
                   + self.traffic_shifts * self.bake_seconds + self.termination_wait_seconds)


@dataclass(frozen=True)
class Settings:
    """Every setting of the app, one section per concern."""

    project: ProjectSettings
    image: ImageSettings
    storage: StorageSettings
    registry: RegistrySettings
    pipeline: PipelineSettings
    script: ScriptSettings
    tuning: TuningSettings
    endpoint: EndpointSettings

    @classmethod
    def from_context(cls, source: Any) -> Settings:
        """Read and validate all sections from a construct's context or a plain mapping."""
        ctx = Context.of(source)
        return cls(
            project=ProjectSettings.from_context(ctx),
            image=ImageSettings.from_context(ctx),
            storage=StorageSettings.from_context(ctx),
            registry=RegistrySettings.from_context(ctx),
            pipeline=(pipeline := PipelineSettings.from_context(ctx)),
            script=ScriptSettings.from_context(ctx),
            tuning=TuningSettings.from_context(ctx, pipeline),
            endpoint=EndpointSettings.from_context(ctx, pipeline),
        )
