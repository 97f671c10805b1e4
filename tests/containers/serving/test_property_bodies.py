"""Property-based: bodies generated for TGI's and OpenAI's schemas and for the handler server, sent over real
HTTP. Whatever the body, the answer is never a 5xx of the server's own, /ping stays 200, and a normal
request afterwards is answered.

Bounded and reproducible: hypothesis is derandomized (the same bodies on every run) with a fixed number of
examples (`JAX_LLM_PROPERTY_EXAMPLES`, default 100 per server) and no per-example deadline (the server, not
the generator, sets the pace). `tests/image` runs the same properties against the image's server.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("JAX_LLM_PROPERTY_EXAMPLES", "100"))
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# Values at and past every range the engine holds, and of every JSON type.
EDGES = st.sampled_from(
    [
        0,
        -1,
        1,
        2,
        3,
        2**31 - 1,
        2**31,
        2**32,
        2**63,
        2**64,
        -(2**63),
        10**30,
        10**400,
        1e308,
        1e-45,
        1e-320,
        0.5,
        1.0,
        1.5,
        2.0,
        3.5e38,
        1e39,
        -0.0,
        float("inf"),
        float("-inf"),
        float("nan"),
        "",
        " ",
        "x",
        "\x00",
        "{{ 7 * 7 }}",
        "\u202e",
        "a" * 600,
        [],
        [""],
        ["a", "b"],
        {},
        {"a": 1},
        True,
        False,
        None,
    ]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40), EDGES)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
PROMPT = st.one_of(st.text(min_size=1, max_size=60), st.sampled_from(["def f(", "import os\n", "{{x}}"]))

TGI_PARAMETERS = [
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "do_sample",
    "stop",
    "seed",
    "return_full_text",
    "details",
    "truncate",
    "best_of",
    "repetition_penalty",
    "typical_p",
    "watermark",
    "decoder_input_details",
    "top_n_tokens",
    "grammar",
]
OPENAI_KEYS = [
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "stream",
    "logprobs",
    "user",
    "n",
    "best_of",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "suffix",
    "top_logprobs",
    "echo",
    "stream_options",
    "max_completion_tokens",
    "tools",
    "response_format",
]


def _values(keys: list[str]) -> st.SearchStrategy[dict]:
    return st.dictionaries(
        st.one_of(st.sampled_from(keys), st.text(max_size=8)), st.one_of(EDGES, JSON), max_size=5
    )


TGI_BODY = st.fixed_dictionaries(
    {"inputs": st.one_of(PROMPT, st.lists(PROMPT, max_size=3), JSON)},
    optional={
        "parameters": st.one_of(_values(TGI_PARAMETERS), JSON),
        "stream": st.one_of(st.booleans(), JSON),
        "max_new_tokens": EDGES,
    },
)
COMPLETION_BODY = st.fixed_dictionaries(
    {"prompt": st.one_of(PROMPT, st.lists(PROMPT, max_size=3), JSON)}
).flatmap(lambda body: _values(OPENAI_KEYS).map(lambda extra: {**extra, **body}))
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool", ""]),
            "content": st.one_of(PROMPT, JSON),
        }
    ),
    JSON,
)
CHAT_BODY = st.fixed_dictionaries({"messages": st.one_of(st.lists(MESSAGE, max_size=4), JSON)}).flatmap(
    lambda body: _values(OPENAI_KEYS).map(lambda extra: {**extra, **body})
)
RAW = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b'{"inputs": "\\ud800"}',
            b'{"prompt": "a", "seed": 1' + b"0" * 5000 + b"}",
            b'{"inputs": "a", "parameters": {"top_k": 1e400}}',
            b"[" * 5000,
            b'{"inputs": NaN}',
            b'{"messages": [{"role": "user", "content": "\\udfff"}]}',
            b"\xff\xfe",
            b"",
        ]
    ),
)


def _encoded(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()


def check_answer(url: str, path: str, content: bytes) -> None:
    """One body: answered below 500 (a stream without an error event), then /ping 200."""
    response = httpx.post(
        f"{url}{path}", content=content, timeout=120, headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, (path, content[:300], response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()  # always JSON, in the route's shape
        assert "error" in body, body
    assert b'"generation"' not in response.content, response.text[:300]  # no engine error inside a stream
    assert httpx.get(f"{url}/ping", timeout=5).status_code == 200


def still_serving(url: str) -> None:
    assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
    answer = httpx.post(
        f"{url}/invocations", json={"inputs": "def f(", "parameters": {"max_new_tokens": 2}}, timeout=60
    )
    assert answer.status_code == 200 and answer.json()[0]["generated_text"] is not None


def run_generation_properties(url: str) -> None:
    """Every property of the generation server at `url` (the test server here, the image's in tests/image)."""

    @BOUNDED
    @given(
        st.one_of(
            st.tuples(st.sampled_from(["/invocations"]), TGI_BODY),
            st.tuples(st.sampled_from(["/invocations", "/v1/completions"]), COMPLETION_BODY),
            st.tuples(st.sampled_from(["/invocations", "/v1/chat/completions"]), CHAT_BODY),
            st.tuples(st.sampled_from(["/invocations", "/v1/completions", "/v1/chat/completions"]), RAW),
        )
    )
    def any_body(case) -> None:
        path, body = case
        check_answer(url, path, _encoded(body))

    any_body()
    still_serving(url)


def test_no_body_in_either_schema_gets_a_5xx_or_stops_the_server(server):
    run_generation_properties(server.url)


HANDLER = """
import json

from sagemaker_inference import errors


def model_fn(model_dir):
    return None


def input_fn(body, content_type):
    if content_type != "application/json":
        raise errors.GenericInferenceToolkitError(415, f"send application/json, not {content_type}")
    try:
        return json.loads(body)
    except ValueError as error:
        raise errors.GenericInferenceToolkitError(400, f"not JSON: {error}")


def predict_fn(data, model):
    return data


def output_fn(prediction, accept):
    if isinstance(prediction, dict) and "as" in prediction:
        return prediction["as"]  # whatever the body asks for: bytes, str, a number, a list...
    return json.dumps(prediction)
"""

CONTENT_TYPES = st.one_of(
    st.sampled_from(["application/json", "text/csv", "application/x-npy", "", "a/b; c=d"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(str.strip),
)


def test_no_body_sent_to_the_handler_server_gets_a_server_5xx_or_stops_it(tmp_path):
    from tests.containers.serving.handler.test_server import Served, model_dir

    root = model_dir(tmp_path, HANDLER)
    with Served(root) as served:
        served.pings(lambda s: s == 200)

        @BOUNDED
        @given(st.one_of(JSON, RAW, st.fixed_dictionaries({"as": JSON})), CONTENT_TYPES, CONTENT_TYPES)
        def any_body(body, content_type, accept) -> None:
            response = httpx.post(
                f"{served.url}/invocations",
                content=_encoded(body),
                timeout=60,
                headers={"Content-Type": content_type, "Accept": accept},
            )
            if response.status_code >= 400:
                error = response.json()
                assert set(error) == {"error", "error_type"}, error
                # A 5xx only for the handler's own failure (its output was no HTTP body): never the server's.
                assert response.status_code < 500 or error["error_type"] == "handler", error
            assert httpx.get(f"{served.url}/ping", timeout=5).status_code == 200

        any_body()
        assert served.invoke({"a": 1}).json() == {"a": 1}
