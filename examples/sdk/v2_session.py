"""What every v2 example shares: the session for `local` (the SDK's local mode) or for SageMaker itself.

Local mode with `local_code`: the source directory and `file://` inputs are mounted, nothing goes to S3.
`serving_port` moves a local endpoint off 8080 (the SDK's default) when that port is taken.
"""

from pathlib import Path


def session(instance_type: str, local_root: str = "./v2-local", serving_port: int = 8080):
    """`LocalSession` for `local` (or `local_gpu`), else a `sagemaker.Session` for the account's region."""
    if not instance_type.startswith("local"):
        import sagemaker

        return sagemaker.Session()
    from sagemaker.local import LocalSession

    Path(local_root).mkdir(parents=True, exist_ok=True)
    local = LocalSession()
    local.config = {
        "local": {
            "local_code": True,
            "container_root": str(Path(local_root).resolve()),
            "serving_port": serving_port,
        }
    }
    return local


def uri(path_or_uri: str) -> str:
    """An s3:// URI as it is; a local path as the file:// URI local mode takes."""
    if "://" in path_or_uri:
        return path_or_uri
    return Path(path_or_uri).resolve().as_uri()
