"""An S3 API on loopback: a `moto` server, for tests of the boto3 path of the L4 archive.

moto keeps everything in memory: nothing survives a restart. Without S3 the archive is a folder.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.request

from streams.devstack.part import Part
from streams.devstack.process import HOST, StackError, spawn

__all__ = ["S3Part"]


class S3Part(Part):
    """moto's S3 server (`s3_port`), started only with `LocalStack(..., with_s3=True)`."""

    name = "s3"
    url_env = "S3_ENDPOINT_URL"
    port_setting = "s3_port"
    scheme = "http://"
    ready_timeout = 30.0

    def launch(self) -> int:
        if importlib.util.find_spec("moto") is None:
            raise StackError(
                "the local S3 server needs moto: `pip install 'moto[server]'` (in the dev extra), "
                "or set S3_ENDPOINT_URL to an S3 API."
            )
        cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.settings.s3_port)]
        return spawn(cmd, self.log_file, cwd=self.dir)

    def ready(self) -> bool:
        # An anonymous ListBuckets: moto answers 200 with an XML body once it serves requests.
        with urllib.request.urlopen(f"{self.address}/", timeout=2) as response:  # noqa: S310 - our URL
            return response.status == 200
