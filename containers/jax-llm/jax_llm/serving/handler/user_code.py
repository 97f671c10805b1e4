"""A model directory with `code/inference.py`: the team's inference handler, as SageMaker's toolkit runs it.

`Model(entry_point="inference.py", source_dir=...)` repacks `model.tar.gz` with `code/inference.py` (and
sets SAGEMAKER_PROGRAM when the file has another name). Its functions:

    model_fn(model_dir) -> model                      required
    input_fn(body, content_type) -> data              default: the inference toolkit's decoder
    predict_fn(data, model) -> prediction             default: model(data), as the framework toolkits do
    output_fn(prediction, accept) -> body             default: the inference toolkit's encoder
    transform_fn(model, body, content_type, accept)   instead of the three above

The defaults are `sagemaker_inference`'s own (pinned), so JSON, CSV and NPY bodies decode and encode as
they do on SageMaker's framework images.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jax_llm.contract.requirements import pip_install
from jax_llm.contract.serving import PROGRAM_VARIABLE

DEFAULT_PROGRAM = "inference.py"
DEFAULT_ACCEPT_VARIABLE = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"


class HandlerError(RuntimeError):
    """The handler module cannot be loaded as SageMaker's contract describes; the message says why."""


def user_program(model_dir: Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """`code/<SAGEMAKER_PROGRAM or inference.py>` when the model directory has one, else None (the GPT)."""
    environ = os.environ if environ is None else environ
    path = Path(model_dir) / "code" / (environ.get(PROGRAM_VARIABLE) or DEFAULT_PROGRAM)
    return path if path.is_file() else None


def install_requirements(code_dir: Path) -> None:
    """`code/requirements.txt`, installed at start (wheels shipped in code/ are preferred)."""
    if (failure := pip_install(code_dir)) is not None:
        raise HandlerError(
            f"could not install {code_dir / 'requirements.txt'}: {failure}; an endpoint with "
            "network isolation cannot reach PyPI: ship the wheels in code/"
        )


class Handler:
    """The user's functions, with the inference toolkit's defaults for those left out."""

    def __init__(self, module: Any, environ: Mapping[str, str] | None = None):
        from sagemaker_inference.default_inference_handler import DefaultInferenceHandler

        environ = os.environ if environ is None else environ
        defaults = DefaultInferenceHandler()
        self.name = Path(module.__file__).name
        self.default_accept = environ.get(DEFAULT_ACCEPT_VARIABLE) or "application/json"
        found = {
            n: getattr(module, n, None)
            for n in ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
        }
        if found["model_fn"] is None:
            raise HandlerError(
                f"{self.name} defines no model_fn(model_dir): the handler needs one to load the model"
            )
        if found["transform_fn"] is not None and any(
            found[n] for n in ("input_fn", "predict_fn", "output_fn")
        ):
            raise HandlerError(
                f"{self.name} defines transform_fn together with input_fn, predict_fn or "
                "output_fn: define transform_fn alone, or the other three"
            )
        self.model_fn: Callable = found["model_fn"]
        self.transform_fn: Callable | None = found["transform_fn"]
        self.input_fn: Callable = found["input_fn"] or defaults.default_input_fn
        self.predict_fn: Callable = found["predict_fn"] or (lambda data, model: model(data))
        self.output_fn: Callable = found["output_fn"] or defaults.default_output_fn

    def __call__(self, model: Any, body: bytes, content_type: str, accept: str) -> tuple[Any, str]:
        """One request: (response body, its content type)."""
        from sagemaker_inference import content_types

        if not accept or accept == content_types.ANY:
            accept = self.default_accept
        data: bytes | str = body.decode("utf-8") if content_type in content_types.UTF8_TYPES else body
        if self.transform_fn is not None:
            result = self.transform_fn(model, data, content_type, accept)
        else:
            result = self.output_fn(self.predict_fn(self.input_fn(data, content_type), model), accept)
        return result if isinstance(result, tuple) else (result, accept)


def load_handler(program: Path) -> Handler:
    """Installs `code/requirements.txt`, imports the program with `code/` importable, checks its functions."""
    code_dir = program.parent
    install_requirements(code_dir)
    importlib.invalidate_caches()  # directories pip just made would otherwise stay unseen by the importer
    sys.path.insert(0, str(code_dir))  # the handler may import its own modules beside it
    spec = importlib.util.spec_from_file_location(program.stem, program)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Handler(module)
