"""The same team's inference handler: SageMaker's four functions, served by the jax-llm image.

`model.tar.gz` holds `bigram.npy` (from train.py) and `code/inference.py` (this file). A request is
`{"inputs": "text", "max_new_bytes": 16}`; the answer continues the text with the most likely bytes.
"""

import json
from pathlib import Path

import numpy as np


def model_fn(model_dir):
    return np.load(Path(model_dir) / "bigram.npy")


def input_fn(request_body, content_type):
    if content_type != "application/json":
        raise ValueError(f"send application/json, not {content_type}")
    return json.loads(request_body)


def predict_fn(data, logits):
    out = bytearray(data["inputs"].encode()[-1:] or b"\n")
    for _ in range(int(data.get("max_new_bytes", 16))):
        out.append(int(np.argmax(logits[out[-1]])))
    return {"generated_text": data["inputs"] + out[1:].decode(errors="replace")}


def output_fn(prediction, accept):
    return json.dumps(prediction)
