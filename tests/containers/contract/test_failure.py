"""`output/failure`: what SageMaker shows (the first 1024 characters) is the error; the traceback follows."""

from jax_llm.contract.failure import FAILURE_REASON_CHARS, write_failure


def _raise_deep(depth: int):
    if depth == 0:
        raise ValueError("channel 'train' (/opt/ml/input/data/train): empty")
    _raise_deep(depth - 1)


def test_message_comes_first_and_fits_the_failure_reason(tmp_path):
    try:
        _raise_deep(50)  # a long traceback must not push the message out of the first 1024 characters
    except ValueError as error:
        write_failure(tmp_path / "output" / "failure", error)
    text = (tmp_path / "output" / "failure").read_text()
    expected = "ValueError: channel 'train' (/opt/ml/input/data/train): empty\n\n"
    assert text[:FAILURE_REASON_CHARS].startswith(expected)
    assert "Traceback (most recent call last)" in text and "_raise_deep" in text
